"""Restructuring changes no number: FaceFormer, CodeTalker and MemoryTalker (tiny presets, with the
mel encoder and with tiny random-initialised wav2vec2 / HuBERT), on fixed weights and a fixed batch,
give bit-identical predictions and per-stage losses to those saved before issue 23's restructuring.

The fixture holds each model's weights, the batch, the predictions and every stage's loss dict
(train mode, torch seeded before each). Compared with ``torch.equal`` at one intra-op thread (the
thread count partitions reductions). Regenerate only for a change of numerics made on purpose, and
say so in the commit: `python tests/test_fixed_weight_outputs.py --write`.

The CPU's vector kernels round differently too (the fixture's machine against an AVX512 one: 1e-7
relative on predictions, up to 4e-6 on losses). So the outputs are also kept per CPU capability
(``fixed_weight_outputs.<capability>.pt``, the same weights, written by `--write-cpu` from the code
before a change): on a CPU with its own file, or the fixture's, the comparison is exact; on any
other it is within float rounding (``CROSS_CPU``), and a changed formula still fails.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

FIXTURE = Path(__file__).parent / "fixtures" / "fixed_weight_outputs.pt"
CROSS_CPU = dict(rtol=1e-5, atol=1e-6)  # predictions and losses between CPU kinds
SUBJECTS = ("A", "B", "C")
N_VERTICES = 48
TINY_HF = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=37,
    conv_dim=(16,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
    hidden_dropout=0.0,
    attention_dropout=0.0,
    activation_dropout=0.0,
    feat_proj_dropout=0.0,
    layerdrop=0.0,
)
# case -> (method, speech encoder family of the tiny random model, or None for the preset's mel)
CASES = {
    "faceformer-mel": ("faceformer", None),
    "faceformer-wav2vec2": ("faceformer", "wav2vec2"),
    "codetalker-mel": ("codetalker", None),
    "codetalker-wav2vec2": ("codetalker", "wav2vec2"),
    "memorytalker-mel": ("memorytalker", None),
    "memorytalker-hubert": ("memorytalker", "hubert"),
}


def _spec():
    from talkbench.datasets.spec import DatasetSpec, Split

    return DatasetSpec(
        name="fixed",
        fps=30.0,
        n_vertices=N_VERTICES,
        splits={"train": Split(SUBJECTS)},
        train_subjects=SUBJECTS,
        regions={"lips": np.arange(4, 12), "upper_face": np.arange(30, 46)},
    )


def _clip(subject: str, sentence: int, seconds: float, seed: int):
    from talkbench.datasets.clip import Clip

    rng = np.random.default_rng(seed)
    frames = int(round(seconds * 30))
    t = np.arange(int(round(frames / 30 * 16000))) / 16000
    audio = (0.3 * np.sin(2 * np.pi * (120 + 40 * seed) * t) + 0.05 * rng.standard_normal(t.size))
    template = rng.standard_normal((N_VERTICES, 3)).astype(np.float32) * 0.05
    motion = 0.002 * np.cumsum(rng.standard_normal((frames, N_VERTICES, 3)), axis=0)
    return Clip(
        f"{subject}_sentence{sentence:02d}", subject, sentence, 30.0, audio.astype(np.float32),
        (template + motion).astype(np.float32), template,
    )


def _batch():
    from talkbench.datasets.batch import collate

    spec = _spec()
    batch = collate([_clip("A", 1, 0.8, 1), _clip("B", 1, 0.6, 2)], spec.speaker_index)
    batch.positive = collate([_clip("A", 2, 0.7, 3), _clip("B", 2, 0.5, 4)], spec.speaker_index)
    batch.negative = collate([_clip("C", 3, 0.9, 5), _clip("A", 3, 0.6, 6)], spec.speaker_index)
    return batch


def _build(case: str):
    from talkbench.config import load_config
    from talkbench.registry import METHODS

    method, family = CASES[case]
    cfg = load_config(method, preset="tiny").method_config
    if family is not None:
        tiny = {"kind": family, "pretrained": False, "hf_overrides": dict(TINY_HF)}
        if isinstance(cfg.audio, dict):  # CodeTalker keeps its audio settings as a mapping
            audio = {**cfg.audio, **tiny}
        else:
            audio = dataclasses.replace(cfg.audio, **tiny)
        cfg = dataclasses.replace(cfg, audio=audio)
    return METHODS.get(method)(cfg, _spec())


def _outputs(model, batch) -> dict:
    """Every stage's losses (train mode, seeded) then the predictions (eval mode)."""
    losses = {}
    for stage in model.stages():
        model.train()
        model.begin_stage(stage)
        torch.manual_seed(0)
        np.random.seed(0)  # transformers draws its SpecAugment spans with NumPy
        losses[stage.name] = {k: v.detach() for k, v in model.loss(stage.name, batch).items()}
    model.eval()
    audio, template = batch.audio[0, : int(batch.audio_lengths[0])], batch.template[0]
    conditions = [0, 2] if model.uses_speaker_id else [None]
    with torch.no_grad():
        predictions = model.predict_conditions(audio, template, conditions)
    return {"losses": losses, "predictions": predictions}


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _cpu_fixture() -> Path:
    return FIXTURE.with_name(f"fixed_weight_outputs.{torch.backends.cpu.get_cpu_capability()}.pt")


def _replay(case: str, saved: dict) -> dict:
    """The case's outputs now, on the fixture's weights."""
    model = _build(case)
    model.load_state_dict(saved["state"])
    return _outputs(model, _batch())


def _equal(out: dict, expected: dict, compare) -> bool:
    return compare(out["predictions"], expected["predictions"]) and all(
        compare(out["losses"][stage][name], value)
        for stage, parts in expected["losses"].items()
        for name, value in parts.items()
    )


@pytest.mark.parametrize("case", list(CASES))
def test_bit_identical_on_fixed_weights(case, one_thread):
    saved = torch.load(FIXTURE, weights_only=True)[case]
    out = _replay(case, saved)
    assert out["predictions"].shape == saved["predictions"].shape
    assert float(saved["predictions"].abs().max()) > 0
    assert out["losses"].keys() == saved["losses"].keys()
    for stage, parts in saved["losses"].items():
        assert out["losses"][stage].keys() == parts.keys(), stage
    this_cpu = torch.load(_cpu_fixture(), weights_only=True)[case] if _cpu_fixture().is_file() else None
    if _equal(out, saved, torch.equal) or (this_cpu is not None and _equal(out, this_cpu, torch.equal)):
        return
    assert this_cpu is None, f"{case}: not bit-identical to {_cpu_fixture().name}, this CPU's own outputs"
    close = lambda a, b: torch.allclose(a, b, **CROSS_CPU)  # noqa: E731
    assert _equal(out, saved, close), f"{case}: beyond float rounding of another CPU ({CROSS_CPU})"


def _write() -> None:
    torch.set_num_threads(1)
    data = {}
    for case in CASES:
        torch.manual_seed(0)
        model = _build(case)
        for p in model.parameters():  # zero-initialised output heads: make them speak
            if p.dim() > 1 and float(p.detach().abs().max()) == 0.0:
                torch.nn.init.normal_(p, std=0.02)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        data[case] = {"state": state, **_outputs(model, _batch())}
    FIXTURE.parent.mkdir(exist_ok=True)
    torch.save(data, FIXTURE)
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size} bytes)")


def _write_cpu() -> None:
    """This CPU's outputs on the fixture's weights (run it on the code before a change)."""
    torch.set_num_threads(1)
    saved = torch.load(FIXTURE, weights_only=True)
    torch.save({case: _replay(case, saved[case]) for case in CASES}, _cpu_fixture())
    print(f"wrote {_cpu_fixture()} ({_cpu_fixture().stat().st_size} bytes)")


if __name__ == "__main__" and "--write" in sys.argv:
    _write()
elif __name__ == "__main__" and "--write-cpu" in sys.argv:
    _write_cpu()
