"""An inference-time linear for a few rows: y = x W^T + b at each autoregressive step over the few
rows of one clip (its conditions), with the CPU kernel that streams the weight fastest.

A step's cost is streaming each weight from memory once. At one row F.linear (a GEMV) does that at
memory speed; at 4-16 rows MKL's GEMM with F.linear's layout runs at about half that speed (CPU, one
thread: 8 rows x 480 MB of weights 98 ms against 40 ms for one row). oneDNN with the weight reordered
once ahead of the loop gets 8 rows to 55 ms; where that kernel is missing, W @ x^T (the weight as the
big left operand) gets 75 ms. Results equal F.linear's to float rounding (different summation order).

The reordered kernel is two private PyTorch ops, called only in this module:
``torch.ops.mkldnn._reorder_linear_weight(weight, batch_size)`` and
``torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")`` (x86 builds with oneDNN; the
ops inductor uses for frozen linears). Private means no promise between releases: written against
torch 2.13.0 (the pin of constraints.txt). A torch without them, or one where they changed (another
signature raises, another result fails the comparison), fails :func:`_onednn_packed`'s probe once and
every layer takes the W @ x^T fallback; tests force that path and compare it with F.linear.

Reordering the weights costs about as much as 60 steps (paper-vocaset, eight rows: 1.7 s against
the 23 s of a 10 s clip), so :func:`reuse` keeps what a loop prepared for the next clip of the same
model (a second copy of the step weights, held while the model lives).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.weak import WeakIdKeyDictionary

T = TypeVar("T")

MIN_ROWS = 4  # below this F.linear (GEMV-like) is as fast or faster
_REUSED: WeakIdKeyDictionary = WeakIdKeyDictionary()  # module -> {key: (parameter stamp, value)}


def reuse(module: nn.Module, key: Hashable, build: Callable[[], T]) -> T:
    """``build()``, kept with ``module`` (while it lives) under ``key`` and rebuilt once any of its
    parameters has changed since: updated in place (version counter), replaced or moved (storage,
    dtype). For step weights derived from a model's parameters: prepared once per model, not per clip.
    """
    stamp = tuple((p.data_ptr(), p._version, p.dtype) for p in module.parameters())
    kept = _REUSED.setdefault(module, {})
    hit = kept.get(key)
    if hit is None or hit[0] != stamp:
        hit = kept[key] = (stamp, build())
    return hit[1]


# -- the private oneDNN ops (torch 2.13.0; see the module docstring) -------------------------------
def _reorder(weight: torch.Tensor, rows: int) -> torch.Tensor:
    """The weight in oneDNN's blocked layout for inputs of ``rows`` rows."""
    return torch.ops.mkldnn._reorder_linear_weight(weight, rows)


def _packed_linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")  # no fused activation


@functools.cache
def _onednn_packed() -> bool:
    """Whether this torch has oneDNN's prepacked linear, as called here (x86 builds with mkldnn)."""
    try:
        # fixed values, not torch.randn: probing must not move the global random stream
        w = torch.linspace(-1.0, 1.0, 32).view(8, 4)
        x = torch.linspace(-2.0, 3.0, 4 * MIN_ROWS).view(MIN_ROWS, 4)
        return bool(torch.allclose(_packed_linear(x, _reorder(w, MIN_ROWS), None), x @ w.t(), atol=1e-5))
    except (AttributeError, RuntimeError, NotImplementedError, TypeError):
        return False


class FewRowLinear:
    """y = x W^T + b for x (rows, in), float32 on the CPU or any tensor elsewhere; built once per
    inference loop (the weight is copied/reordered for ``rows``, so later weight updates are not seen).

    ``mode``: ``packed`` (oneDNN, reordered weight), ``wxt`` (W @ x^T, the fallback without it) or
    ``linear`` (F.linear: fewer than MIN_ROWS rows, another dtype or device).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, rows: int):
        self.weight = weight.detach()
        self.bias = None if bias is None else bias.detach()
        cpu32 = self.weight.device.type == "cpu" and self.weight.dtype == torch.float32
        self.mode = "linear"
        if rows >= MIN_ROWS and cpu32:
            if _onednn_packed():
                self.packed = _reorder(self.weight, rows)
                self.mode = "packed"
            else:
                self.mode = "wxt"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "packed":
            return _packed_linear(x.contiguous(), self.packed, self.bias)
        if self.mode == "wxt":
            if self.bias is None:
                return torch.mm(self.weight, x.t()).t().contiguous()
            return torch.addmm(self.bias[:, None], self.weight, x.t()).t().contiguous()
        return F.linear(x, self.weight, self.bias)
