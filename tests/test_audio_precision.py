"""Speech-encoder speed settings: SDPA attention in the HF encoders; bf16 autocast for inference on
CUDA only (CPU and training keep float32; the CPU outputs are pinned by test_encoder_outputs.py)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_audio_encoders import make_spec, tiny_cfg

from talkbench.audio.build import build_audio_encoder


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert"])
def test_hf_encoders_use_sdpa_attention(kind):
    enc = build_audio_encoder(tiny_cfg(kind), make_spec())
    assert enc.model.config._attn_implementation == "sdpa"


def test_no_autocast_on_cpu():
    enc = build_audio_encoder(tiny_cfg("mel"), make_spec()).eval()
    with torch.no_grad():
        assert not isinstance(enc.inference_precision(torch.zeros(1, 1600)), torch.autocast)
        h, _ = enc(torch.randn(1, 16000), torch.tensor([16000]))
    assert h.dtype == torch.float32


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", ["mel", "wav2vec2"])
def test_cuda_inference_in_bf16_close_to_fp32(kind):
    torch.manual_seed(0)
    enc = build_audio_encoder(tiny_cfg(kind), make_spec()).cuda().eval()
    fp32 = build_audio_encoder(tiny_cfg(kind, cuda_bf16_inference=False), make_spec()).cuda().eval()
    fp32.load_state_dict(enc.state_dict())
    audio = torch.randn(2, 32000, device="cuda")
    lengths = torch.tensor([32000, 24000], device="cuda")
    with torch.no_grad():
        fast, n_fast = enc(audio, lengths)
        ref, n_ref = fp32(audio, lengths)
    assert fast.dtype == torch.float32 and torch.equal(n_fast, n_ref)
    scale = float(ref.abs().max())
    assert float((fast - ref).abs().max()) < 5e-2 * scale  # bf16 rounding, not another result
    assert not torch.equal(fast, ref)  # autocast did run
    train_out, _ = enc(audio, lengths)  # grad enabled: float32 as configured by the run
    torch.testing.assert_close(train_out.detach(), ref, rtol=1e-4, atol=1e-4 * scale)
    assert dataclasses.asdict(enc.cfg)["cuda_bf16_inference"] is True
