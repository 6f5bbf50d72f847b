"""MemoryTalker's style branch on a padded batch equals the per-clip loop (outputs and gradients).

Clips of different lengths, random weights; lengths include odd ones (the stride-2 pool's lone last
frame), ones too short to reflect (replicate padding) and audio shorter than half an STFT window.
"""

from __future__ import annotations

import torch

from talkbench.methods.memorytalker.frontend import style_log_mel, style_log_mel_padded
from talkbench.methods.memorytalker.style import SpeakingStyleEncoder

FRAMES = (3, 4, 9, 50, 101, 128)  # mel frames per clip
SAMPLES = (150, 1000, 4001, 4321, 7999)  # waveform samples per clip


def _encoder() -> SpeakingStyleEncoder:
    torch.manual_seed(0)
    enc = SpeakingStyleEncoder(8, n_mels=20, channels=16, out_dim=24, dense_blocks=2)
    with torch.no_grad():  # random biases too (zero-initialised as released), so padding would show
        for p in enc.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return enc


def _padded(clips: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(c.shape[-1] for c in clips)
    out = torch.stack([torch.nn.functional.pad(c, (0, width - c.shape[-1]), value=7.0) for c in clips])
    return out, torch.tensor([c.shape[-1] for c in clips])


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * max(float(b.detach().abs().max()), 1.0))


def test_log_mel_padded_equals_each_clip_alone():
    torch.manual_seed(1)
    waves = [torch.randn(n) * (0.1 + i) + i for i, n in enumerate(SAMPLES)]
    mel, frames = style_log_mel_padded(*_padded(waves), n_mels=40)
    for b, w in enumerate(waves):
        alone = style_log_mel(w[None], n_mels=40)[0]
        assert int(frames[b]) == alone.shape[-1]
        _close(mel[b, :, : alone.shape[-1]], alone)


def test_encoder_padded_equals_loop_outputs_and_gradients():
    enc = _encoder()
    torch.manual_seed(2)
    clips = [torch.randn(20, n) for n in FRAMES]
    mel, lengths = _padded(clips)
    mel.requires_grad_(True)
    weights = torch.randn(len(clips), 8)

    out = enc(mel, lengths)
    (out * weights).sum().backward()
    grads = {n: p.grad.clone() for n, p in enc.named_parameters() if p.grad is not None}
    assert len(grads) == len(list(enc.encoder.parameters())) + 2  # E_s and to_style_emb
    enc.zero_grad(set_to_none=True)

    singles = [c.clone().requires_grad_(True) for c in clips]
    loop = torch.cat([enc(c[None]) for c in singles])
    (loop * weights).sum().backward()

    _close(out, loop)
    assert grads.keys() == {n for n, p in enc.named_parameters() if p.grad is not None}
    for name, p in enc.named_parameters():
        if p.grad is not None:
            _close(grads[name], p.grad)
    for b, c in enumerate(singles):
        _close(mel.grad[b, :, : FRAMES[b]], c.grad)
        assert bool((mel.grad[b, :, FRAMES[b] :] == 0).all())  # padding gets no gradient
    # the comparison can fail: the same batch without lengths (zero-free padding read as frames) differs
    assert not torch.allclose(enc(mel.detach()), loop, atol=1e-3)


def test_model_style_features_padded_equals_loop():
    from test_memorytalker import make_spec, tiny_config

    from talkbench.methods.memorytalker import MemoryTalker

    torch.manual_seed(3)
    model = MemoryTalker(tiny_config(style_input_scale=0.05), make_spec())
    waves = [torch.randn(n) * 0.3 for n in (3200, 4960, 6401, 8000)]
    audio, lengths = _padded(waves)
    f_s = model.style_features(audio, lengths)
    f_s.square().sum().backward()
    grads = {n: p.grad.clone() for n, p in model.style_encoder.named_parameters() if p.grad is not None}
    assert grads and all(bool(g.abs().sum() > 0) for g in grads.values())
    model.zero_grad(set_to_none=True)
    loop = torch.cat([model.style_features(w[None], torch.tensor([w.shape[0]])) for w in waves])
    loop.square().sum().backward()
    _close(f_s, loop)
    assert grads.keys() == {n for n, p in model.style_encoder.named_parameters() if p.grad is not None}
    for name, p in model.style_encoder.named_parameters():
        if p.grad is not None:
            _close(grads[name], p.grad)
    # anchor, positive and negative batches of different widths in one pass: the same features
    parts = [_padded(waves[:2]), _padded(waves[2:])]
    with torch.no_grad():
        many = model._style_many(*parts)
    _close(torch.cat(many), loop.detach())
