"""The facial-motion memory M_m (n slots x c features) with key and value addressing (spec §2.2).

Key addressing reads with softmax(kappa * z) from the text logits z; value addressing writes through
softmax(kappa * cos(f_m, M_m)) from the motion feature. Stylization scales each slot per sample.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FacialMotionMemory(nn.Module):
    def __init__(self, slots: int, dim: int, kappa: float):
        super().__init__()
        self.kappa = kappa
        self.M_m = nn.Parameter(torch.empty(slots, dim))
        nn.init.xavier_normal_(self.M_m)

    def key_address(self, logits: torch.Tensor) -> torch.Tensor:
        """K_txt = softmax(kappa * z) over the slots (Eq 5): (B, T, n)."""
        return torch.softmax(self.kappa * logits, dim=-1)

    def read(
        self, key: torch.Tensor, style: torch.Tensor | None = None, detach: bool = False
    ) -> torch.Tensor:
        """f_mkey = K_txt . M (Eq 6); ``style`` (B, n) stylizes per sample: M~_b = diag(w_b) M (Eq 14).

        ``detach`` is stage 1's stop-gradient: the reconstruction losses never reach M_m.
        """
        memory = self.M_m.detach() if detach else self.M_m
        if style is None:
            return key @ memory
        # per sample (deviation §10.1): (B, T, n) x (B, n, c); the release averages w over the batch
        return torch.einsum("btn,bnc->btc", key, style[:, :, None] * memory)

    def value_logits(self, motion: torch.Tensor) -> torch.Tensor:
        """kappa * cos(f_m, M_m): cosine of the L2-normalised motion feature and slots, (B, T, n)."""
        return self.kappa * (F.normalize(motion, dim=-1) @ F.normalize(self.M_m, dim=-1).t())

    def value_address(self, motion: torch.Tensor) -> torch.Tensor:
        """V_m = softmax(kappa * cos(f_m, M_m)) (Eq 1): (B, T, n)."""
        return torch.softmax(self.value_logits(motion), dim=-1)

    def update_loss(
        self, motion: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """L_mem (Eq 3) and L_align (Eq 7). Inputs are detached here, so both train only M_m.

        motion f_m (B, T, c), logits z (B, T, n), mask (B, T) True = valid frame.
        L_mem is an MSE averaged over valid elements. L_align is the release's
        ``kl_div(log V_m, K, reduction='batchmean')``: the sum over valid frames and slots divided by
        B, so at B = 1 it is exactly the release's value (a sum over frames); padded frames add nothing.
        """
        motion = motion.detach()
        log_value = torch.log_softmax(self.value_logits(motion), dim=-1)
        recon = log_value.exp() @ self.M_m
        m = mask[..., None].to(motion.dtype)
        l_mem = (((recon - motion) ** 2) * m).sum() / (m.sum() * motion.shape[-1]).clamp(min=1)
        key = self.key_address(logits.detach())
        kl = torch.xlogy(key, key) - key * log_value  # F.kl_div(log V, K) elementwise
        l_align = (kl * m).sum() / motion.shape[0]
        return l_mem, l_align
