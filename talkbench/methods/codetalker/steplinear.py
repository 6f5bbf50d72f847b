"""Linear layers for autoregressive inference steps over a few rows (the conditions of one clip).

A step's cost is streaming each weight from memory once. At one row F.linear (a GEMV) does that at
memory speed; at 4-16 rows MKL's GEMM with F.linear's layout runs at about half that speed (CPU, one
thread: 8 rows x 480 MB of weights 98 ms against 40 ms for one row). oneDNN with the weight reordered
once ahead of the loop gets 8 rows to 55 ms; where that kernel is missing, W @ x^T (the weight as the
big left operand) gets 75 ms. Results equal F.linear's to float rounding (different summation order).

Reordering the weights costs about as much as 60 steps (paper-vocaset, eight rows: 1.7 s against
the 23 s of a 10 s clip), so ``reuse`` keeps what a loop prepared for the next clip of the same model
(a second copy of the step weights, held while the model lives).
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


@functools.cache
def _onednn_packed() -> bool:
    """Whether this torch has oneDNN's prepacked linear (x86 builds with mkldnn; not every build)."""
    try:
        # fixed values, not torch.randn: probing must not move the global random stream
        w = torch.linspace(-1.0, 1.0, 32).view(8, 4)
        x = torch.linspace(-2.0, 3.0, 4 * MIN_ROWS).view(MIN_ROWS, 4)
        packed = torch.ops.mkldnn._reorder_linear_weight(w, MIN_ROWS)
        out = torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")
        return bool(torch.allclose(out, x @ w.t(), atol=1e-5))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


class StepLinear:
    """y = x W^T + b for x (rows, in), float32 on the CPU or any tensor elsewhere; built once per
    inference loop (the weight is copied/reordered for ``rows``, so later weight updates are not seen)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, rows: int):
        self.weight = weight.detach()
        self.bias = None if bias is None else bias.detach()
        cpu32 = self.weight.device.type == "cpu" and self.weight.dtype == torch.float32
        self.mode = "linear"
        if rows >= MIN_ROWS and cpu32:
            if _onednn_packed():
                self.packed = torch.ops.mkldnn._reorder_linear_weight(self.weight, rows)
                self.mode = "packed"
            else:
                self.mode = "wxt"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "packed":
            return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self.packed, self.bias, "none", [], "")
        if self.mode == "wxt":
            if self.bias is None:
                return torch.mm(self.weight, x.t()).t().contiguous()
            return torch.addmm(self.bias[:, None], self.weight, x.t()).t().contiguous()
        return F.linear(x, self.weight, self.bias)
