"""Does FaceDiffuser's clean-motion estimate depend on its noisy input? (issue 26: why its samples agree)

Sample diversity can only come through x_t: the audio and the speaker are the same for every sample.
Both samplers end on the network's estimate at t = 0 (the posterior mean there is x0_hat itself), so
when x0_hat(x_t, t = 0) does not depend on x_t, every sample of a clip is the same to the last bit,
whatever noise the chain drew.

The release's motion branch is Linear -> Conv1d -> ReLU -> MaxPool -> ReLU over absolute vertex
coordinates. Face motion is millimetres while the noise is N(0, 1) per coordinate, so at every t the
noise dwarfs the motion (at t = 0 it is sqrt(1 - abar_0): 0.025 at T = 100, 0.006 at T = 1000, against a
motion std of about 0.0015 on SynthTalk and VOCASET); a trained model can learn to gate the branch off
(a negative bias under the ReLU) at small t and predict from the audio alone.

This measures it on test clips: at each of a few steps t, x_t = q_sample(ground truth, t, eps) for a
few seeded eps, and the spread of x0_hat over them (max abs deviation from their mean, relative to the
clip's motion std), and the share of the motion branch's units that are on.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from talkbench.methods.base import sample_generator

N_CLIPS = 4  # the first test clips
N_NOISES = 4  # draws of x_t per clip and step


def probe_steps(diff_steps: int) -> list[int]:
    """t = 0 (the step every sample ends on), the last few and a spread up to T - 1."""
    wanted = [0, 1, 2, 5, 10, 25, 50, 75, 99, 250, 500, 999]
    return sorted({t for t in wanted if t < diff_steps} | {diff_steps - 1})


@torch.no_grad()
def noise_dependence(model, clips: Iterable, seed: int = 0) -> tuple[dict, dict[str, float]]:
    """(content, metrics) of the diagnostic on the first ``N_CLIPS`` of ``clips``, under the first
    training speaker's condition; ``model`` is a FaceDiffuser in eval mode."""
    steps = probe_steps(model.config.diff_steps)
    spread = {t: [] for t in steps}
    units_on = {t: [] for t in steps}
    speaker = model.one_hot(torch.tensor([0], device=model.device))
    for i, clip in enumerate(clips):
        if i == N_CLIPS:
            break
        cond, tpl = model._clip(torch.tensor(np.asarray(clip.audio)), torch.tensor(np.asarray(clip.template)))
        n = cond.shape[1]
        gt = torch.as_tensor(clip.vertices, dtype=torch.float32, device=cond.device)[:n].reshape(n, -1)
        tpl = tpl.reshape(1, -1)
        motion_std = float((gt - tpl).std()) or 1.0
        gen = sample_generator(seed + i)
        for t in steps:
            eps = torch.randn((N_NOISES, n, gt.shape[1]), generator=gen).to(cond.device)
            ts = torch.full((N_NOISES,), t, device=cond.device)
            x_t = model.diffusion.q_sample(gt.expand(N_NOISES, -1, -1), ts, eps)
            units = model.input_projection(x_t.reshape(N_NOISES * n, 1, -1))
            x0 = model.denoise(x_t, ts, cond, tpl, speaker)
            spread[t].append(float((x0 - x0.mean(0, keepdim=True)).abs().max()) / motion_std)
            units_on[t].append(float((units > 0).float().mean()))
    if not any(spread.values()):
        return {}, {}
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    per_step = {str(t): {"x0_spread_rel": mean(spread[t]), "units_on": mean(units_on[t])} for t in steps}
    independent = [t for t in steps if max(spread[t]) == 0.0]
    # the smallest probed step at which x0_hat depends on x_t at all (T: nowhere)
    first_dependent = min((t for t in steps if max(spread[t]) > 0.0), default=model.config.diff_steps)
    content = {
        "steps": per_step,
        "independent_of_x_t_at": independent,
        "clips": len(spread[steps[0]]),
        "noises": N_NOISES,
        "condition": model.spec.train_subjects[0],
        "note": "x0_spread_rel: max |x0_hat - mean over noises| / std of the clip's motion; units_on: share "
        "of the motion branch's ReLU units > 0. Independent at t = 0: every sample is identical.",
    }
    metrics = {
        "x0_spread_t0": per_step["0"]["x0_spread_rel"],
        "motion_units_on_t0": per_step["0"]["units_on"],
        "first_step_using_x_t": float(first_dependent),
    }
    return content, metrics
