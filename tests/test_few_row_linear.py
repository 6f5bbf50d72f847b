"""The inference-time linear for a few rows (methods/codetalker/few_row_linear.py): every kernel
equals F.linear; a torch without oneDNN's private prepacked ops (or with changed ones) takes the
W @ x^T fallback, forced here, which equals F.linear too; the probe leaves the random stream alone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from talkbench.methods.codetalker import few_row_linear
from talkbench.methods.codetalker.few_row_linear import MIN_ROWS, FewRowLinear


def _case(rows: int = 6):
    g = torch.Generator().manual_seed(0)
    return torch.randn(70, 30, generator=g), torch.randn(70, generator=g), torch.randn(rows, 30, generator=g)


@pytest.fixture
def fresh_probe():
    """The probe's cached answer cleared before and after (a faked torch must not leak into others)."""
    few_row_linear._onednn_packed.cache_clear()
    yield
    few_row_linear._onednn_packed.cache_clear()


@pytest.mark.parametrize("mode", ["linear", "packed", "wxt"])
@pytest.mark.parametrize("bias", [True, False])
def test_every_kernel_equals_f_linear(mode, bias):
    w, b, x = _case()
    lin = FewRowLinear(w, b if bias else None, rows=6)
    if mode == "packed" and lin.mode != "packed":
        pytest.skip("this torch has no oneDNN prepacked linear")
    lin.mode = mode
    assert torch.allclose(lin(x), F.linear(x, w, b if bias else None), atol=1e-5)
    assert FewRowLinear(w, b, rows=MIN_ROWS - 1).mode == "linear"
    assert FewRowLinear(w.double(), b.double(), rows=6).mode == "linear"  # float32 CPU only


def _missing(*args):
    raise AttributeError("'_OpNamespace' 'mkldnn' object has no attribute '_reorder_linear_weight'")


def _changed(*args):
    raise RuntimeError("mkldnn::_reorder_linear_weight() Expected a value of type 'int' for argument")


@pytest.mark.parametrize("torch_without", [_missing, _changed], ids=["ops-missing", "signature-changed"])
@pytest.mark.parametrize("bias", [True, False])
def test_without_the_private_ops_the_fallback_equals_f_linear(fresh_probe, monkeypatch, torch_without, bias):
    monkeypatch.setattr(few_row_linear, "_reorder", torch_without)
    w, b, x = _case()
    lin = FewRowLinear(w, b if bias else None, rows=6)
    assert not few_row_linear._onednn_packed() and lin.mode == "wxt"
    assert torch.allclose(lin(x), F.linear(x, w, b if bias else None), atol=1e-5)


def _not_a_linear(x, packed, bias):
    return torch.zeros(len(x), 8)  # runs, but computes something else


def test_a_private_op_with_changed_results_fails_the_probe(fresh_probe, monkeypatch):
    monkeypatch.setattr(few_row_linear, "_packed_linear", _not_a_linear)
    assert not few_row_linear._onednn_packed()
    assert FewRowLinear(*_case()[:2], rows=6).mode == "wxt"


def test_the_probe_leaves_the_global_random_stream_alone(fresh_probe):
    torch.manual_seed(0)
    few_row_linear._onednn_packed()
    after_probe = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(torch.rand(3), after_probe)
