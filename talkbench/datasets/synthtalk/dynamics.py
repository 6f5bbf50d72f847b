"""The critically damped second-order system used for coarticulation and for smooth acoustic tracks."""

from __future__ import annotations

import numpy as np
from scipy import signal


def critically_damped(x: np.ndarray, omega: float, dt: float, axis: int = 0) -> np.ndarray:
    """Response of a critically damped 2nd-order system (unit DC gain) to the target track x."""
    p = float(np.exp(-omega * dt))
    b = np.array([(1.0 - p) ** 2])
    a = np.array([1.0, -2.0 * p, p * p])
    x = np.asarray(x, dtype=np.float64)
    first = np.take(x, [0], axis=axis)
    zi = signal.lfilter_zi(b, a)
    shape = [1] * x.ndim
    shape[axis] = 2
    return signal.lfilter(b, a, x, axis=axis, zi=zi.reshape(shape) * first)[0]
