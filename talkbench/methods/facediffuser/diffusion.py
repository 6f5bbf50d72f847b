"""The release's Gaussian diffusion (guided-diffusion as modified by MDM; specs/facediffuser.md §4).

Cosine betas, x0 prediction, fixed-small posterior variance, no guidance. The schedule's constants
are computed in float64 and gathered as float32, as guided-diffusion does. The samplers take a
``denoise(x_t, t) -> x0`` callable (the audio already encoded, so nothing is recomputed per step) and
``noise() -> (N, ...)``, which draws each sample's noise from its own generator. The loops treat what
``noise()`` returns as read-only (it may be a buffer refilled at every call) and update their own
state in place, with the release's operations in its order: at N = 10 on a SynthTalk-sized mesh each
state is ~180 MB, and a fresh one per operation costs more in page faults than the arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from talkbench.errors import ConfigError

Denoise = Callable[[torch.Tensor, int], torch.Tensor]
Noise = Callable[[], torch.Tensor]


def cosine_betas(steps: int, max_beta: float = 0.999) -> np.ndarray:
    """Nichol & Dhariwal: beta_i = min(1 - abar((i+1)/T) / abar(i/T), 0.999), abar(s) =
    cos^2(((s + 0.008) / 1.008) pi / 2)."""
    def abar(s: float) -> float:
        return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

    return np.array([min(1 - abar((i + 1) / steps) / abar(i / steps), max_beta) for i in range(steps)])


class Diffusion:
    """One process over ``betas`` (the full schedule, or a respaced one with ``timesteps`` naming the
    original step each index stands for, which is what the network is called with)."""

    def __init__(self, betas: np.ndarray, timesteps: list[int] | None = None):
        self.betas = np.asarray(betas, dtype=np.float64)
        self.timesteps = list(range(len(betas))) if timesteps is None else list(timesteps)
        a = np.cumprod(1.0 - self.betas)
        self.alphas_cumprod = a
        self.alphas_cumprod_prev = np.append(1.0, a[:-1])
        prev = self.alphas_cumprod_prev
        self.posterior_variance = self.betas * (1.0 - prev) / (1.0 - a)
        # log of the posterior variance with its first entry (0) replaced by the second
        self.posterior_log_variance_clipped = np.log(
            np.append(self.posterior_variance[1], self.posterior_variance[1:])
        )
        self.posterior_mean_coef1 = self.betas * np.sqrt(prev) / (1.0 - a)
        self.posterior_mean_coef2 = (1.0 - prev) * np.sqrt(1.0 - self.betas) / (1.0 - a)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / a)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / a - 1)

    @classmethod
    def cosine(cls, steps: int) -> Diffusion:
        return cls(cosine_betas(steps))

    def respaced(self, k: int) -> Diffusion:
        """guided-diffusion's ``space_timesteps(T, "ddimK")``: every (T // K)-th step from 0, the betas
        recomputed so the kept steps have the same abar."""
        steps = len(self.betas)
        stride = next((s for s in range(1, steps + 1) if len(range(0, steps, s)) == k), None)
        if stride is None:
            raise ConfigError(f"ddim-{k}: no stride gives exactly {k} of {steps} steps; pick another K")
        use = list(range(0, steps, stride))
        last, betas = 1.0, []
        for i in use:
            betas.append(1 - self.alphas_cumprod[i] / last)
            last = self.alphas_cumprod[i]
        return Diffusion(np.array(betas), [self.timesteps[i] for i in use])

    @staticmethod
    def _at(arr: np.ndarray, t: int, like: torch.Tensor) -> torch.Tensor:
        return torch.tensor(float(arr[t]), dtype=torch.float64).to(like.device).float()

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, one t per batch element (B,)."""
        a = torch.from_numpy(self.alphas_cumprod).to(x0.device)[t].float()
        shape = (-1,) + (1,) * (x0.dim() - 1)
        return a.sqrt().view(shape) * x0 + (1 - a).sqrt().view(shape) * noise

    # -- samplers ---------------------------------------------------------------------------------
    def p_sample_loop(self, denoise: Denoise, noise: Noise, start: int | None = None,
                      x_start: torch.Tensor | None = None) -> torch.Tensor:
        """Ancestral sampling from index ``start`` (default the last) down to 0: x0_hat = f(x_t, t);
        x_{t-1} = posterior mean + sigma_t z (z drawn at every step, unused at t = 0)."""
        start = len(self.betas) - 1 if start is None else start
        x = (noise() if x_start is None else x_start).clone()
        for i in range(start, -1, -1):
            x0 = denoise(x, self.timesteps[i])
            # mean = c1 x0 + c2 x, into x (x0's buffer is then free for sigma z)
            x.mul_(self._at(self.posterior_mean_coef2, i, x)).add_(
                x0.mul_(self._at(self.posterior_mean_coef1, i, x)))
            z = noise()
            if i > 0:
                sigma = torch.exp(0.5 * self._at(self.posterior_log_variance_clipped, i, x))
                x.add_(torch.mul(z, sigma, out=x0))
        return x

    def ddim_sample_loop(self, denoise: Denoise, noise: Noise, eta: float = 0.0, start: int | None = None,
                         x_start: torch.Tensor | None = None) -> torch.Tensor:
        """DDIM (guided-diffusion's ``ddim_sample``) with the x0 the network predicts. The release
        draws z at every step; with eta 0 it is multiplied by sigma = 0, so it is not drawn."""
        start = len(self.betas) - 1 if start is None else start
        x = (noise() if x_start is None else x_start).clone()
        for i in range(start, -1, -1):
            x0 = denoise(x, self.timesteps[i])
            # eps = (x / sqrt(abar) - x0) / sqrt(1 / abar - 1), into x
            x.mul_(self._at(self.sqrt_recip_alphas_cumprod, i, x)).sub_(x0).div_(
                self._at(self.sqrt_recipm1_alphas_cumprod, i, x))
            a, a_prev = self._at(self.alphas_cumprod, i, x), self._at(self.alphas_cumprod_prev, i, x)
            sigma = eta * torch.sqrt((1 - a_prev) / (1 - a)) * torch.sqrt(1 - a / a_prev)
            # x = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps
            x.mul_(torch.sqrt(1 - a_prev - sigma**2)).add_(x0.mul_(torch.sqrt(a_prev)))
            if eta > 0:
                z = noise()  # drawn at every step as the release does, so fixed noise replays its chain
                if i > 0:
                    x.add_(torch.mul(z, sigma, out=x0))
        return x

    def truncated_loop(self, denoise: Denoise, noise: Noise, skip: int) -> torch.Tensor:
        """``ddim_sample_loop(..., skip_timesteps=skip)`` as ProbTalk3D ran it: eta 0 from index
        T - skip - 1, starting at q_sample(zeros) = sqrt(1 - abar) eps around zero, not around a face."""
        start = len(self.betas) - skip - 1
        x_start = math.sqrt(1.0 - float(self.alphas_cumprod[start])) * noise()
        return self.ddim_sample_loop(denoise, noise, 0.0, start=start, x_start=x_start)
