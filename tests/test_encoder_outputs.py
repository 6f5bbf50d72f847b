"""Speech-encoder speed work changes no output: FaceFormer and MemoryTalker tiny and a random-init
small wav2vec2, on fixed weights, against outputs saved before that work (1e-5 relative).

The fixture holds each model's weights, its input and its output. Regenerate it only for a change of
numerics made on purpose: `python tests/test_encoder_outputs.py --write`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

FIXTURE = Path(__file__).parent / "fixtures" / "encoder_outputs.pt"
SUBJECTS = ("A", "B")


def _spec(n_vertices: int = 64):
    from talkbench.datasets.spec import DatasetSpec, Split

    return DatasetSpec(
        "unit",
        30.0,
        n_vertices,
        {"train": Split(SUBJECTS)},
        SUBJECTS,
        regions={"lips": np.arange(8), "upper_face": np.arange(32, 64)},
    )


def _build(name: str):
    from talkbench.config import load_config

    if name == "wav2vec2-small":
        from test_audio_encoders import tiny_cfg

        from talkbench.audio.build import build_audio_encoder

        return build_audio_encoder(tiny_cfg("wav2vec2"), _spec()).eval()
    cfg = load_config(name, preset="tiny").method_config
    if name == "faceformer":
        from talkbench.methods.faceformer import FaceFormer

        return FaceFormer(cfg, _spec()).eval()
    from talkbench.methods.memorytalker import MemoryTalker

    m = MemoryTalker(cfg, _spec())
    m.begin_stage(m.stages()[-1])  # the stylized inference path
    return m.eval()


def _run(name: str, model, audio: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        if name == "wav2vec2-small":
            return model(audio[None], torch.tensor([audio.shape[0]]))[0][0]
        template = torch.zeros(64, 3)
        if name == "faceformer":
            return model.predict_conditions(audio, template, [0, 1])
        return model.predict(audio, template)


CASES = ("faceformer", "memorytalker", "wav2vec2-small")


@pytest.mark.parametrize("name", CASES)
def test_outputs_unchanged_on_fixed_weights(name):
    saved = torch.load(FIXTURE, weights_only=True)[name]
    model = _build(name)
    model.load_state_dict(saved["state"])
    out = _run(name, model, saved["audio"])
    assert out.shape == saved["out"].shape
    scale = saved["out"].abs().max()
    assert scale > 0
    torch.testing.assert_close(out, saved["out"], rtol=1e-5, atol=1e-5 * float(scale))


def _write() -> None:
    data = {}
    for name in CASES:
        torch.manual_seed(0)
        model = _build(name)
        for p in model.parameters():  # output heads start at zero in some methods: make them speak
            if p.dim() > 1 and float(p.detach().abs().max()) == 0.0:
                torch.nn.init.normal_(p, std=0.02)
        audio = torch.randn(16000) * 0.1
        data[name] = {"state": model.state_dict(), "audio": audio, "out": _run(name, model, audio)}
    FIXTURE.parent.mkdir(exist_ok=True)
    torch.save(data, FIXTURE)
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size} bytes)")


if __name__ == "__main__" and "--write" in sys.argv:
    sys.path.insert(0, str(Path(__file__).parent))
    _write()
