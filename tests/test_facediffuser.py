"""FaceDiffuser (specs/facediffuser.md): parameter counts at paper scale, the denoiser against a literal
transcription of the release's forward (HuBERT re-run inside, ``adjust_input_representation`` on the
whole clip), the reference sampler against guided-diffusion's ``p_sample_loop`` in float64 on fixed
noise, the schedule's known values, the Huber loss, samples replayable by seed, the audio encoded once."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from test_audio_encoders import TINY_HF

from talkbench.audio.config import AudioEncoderConfig
from talkbench.datasets.spec import DatasetSpec
from talkbench.methods.facediffuser import FaceDiffuser
from talkbench.methods.facediffuser.config import FaceDiffuserConfig
from talkbench.methods.facediffuser.diffusion import Diffusion, cosine_betas
from talkbench.official_import import paper_model

PRESETS = Path(__file__).parents[1] / "talkbench" / "presets" / "facediffuser"


def _spec(fps=30.0, n_vertices=20, subjects=("a", "b", "c"), name="unit"):
    return DatasetSpec(name=name, fps=fps, n_vertices=n_vertices, splits={}, train_subjects=subjects,
                       regions={"lips": np.arange(5)})


def tiny(fps=30.0, steps=12, **kw) -> FaceDiffuser:
    audio = AudioEncoderConfig(kind="hubert", pretrained=False, frozen_layers=2,
                               hf_overrides=dict(TINY_HF, num_hidden_layers=3))
    cfg = FaceDiffuserConfig(latent_dim=16, gru_dim=16, diff_steps=steps, audio=audio, **kw)
    torch.manual_seed(0)
    model = FaceDiffuser(cfg, _spec(fps)).eval()
    for p in model.final_layer.parameters():  # zero-initialised as released: give it a signal
        torch.nn.init.normal_(p, std=0.05)
    return model


# ------------------------------------------------------------------------------ parameter counts
@pytest.mark.parametrize("preset, v, subjects, fps, total, trainable, parts", [
    ("paper-biwi", 23370, 6, 25.0, 207_906_152, 189_134_952,
     dict(cond_projection=786_944, input_projection=71_793_674, time_mlp=256_512, norm_cond=3_072,
          gru=4_724_736, final_layer=35_966_430, obj_vector=3_072)),
    ("paper-vocaset", 5023, 8, 30.0, 107_796_327, 89_025_127,
     dict(cond_projection=393_472, input_projection=7_715_850, time_mlp=256_256, norm_cond=1_536,
          gru=1_182_720, final_layer=3_872_733, obj_vector=2_048)),
])
def test_parameter_counts_at_paper_scale(preset, v, subjects, fps, total, trainable, parts):
    spec = _spec(fps, v, tuple(str(i) for i in range(subjects)), preset[len("paper-"):])
    with torch.device("meta"):  # shapes only: no memory, no weights, no download
        model = paper_model("facediffuser", preset, spec=spec)
    counts = model.parameter_counts()
    assert counts["total"] == total
    assert counts["audio_encoder"] == 94_371_712  # HuBERT-base
    assert {k: counts[k] for k in parts} == parts
    assert sum(p.numel() for _, p in model.named_trainable(model.stages()[0])) == trainable
    frozen = set(model.audio_encoder.frozen_parameters())
    assert "model.encoder.layers.1.attention.k_proj.weight" in frozen
    assert "model.encoder.layers.2.attention.k_proj.weight" not in frozen


def test_multiface_preset_counts():
    """Multiface has no dataset here: its preset's values, built on a 6,172-vertex spec."""
    values = yaml.safe_load((PRESETS / "paper-multiface.yaml").read_text())["facediffuser"]
    values["audio"] = AudioEncoderConfig(**dict(values["audio"], pretrained=False))
    with torch.device("meta"):
        model = FaceDiffuser(FaceDiffuserConfig(**values), _spec(30.0, 6172, tuple("abcdefghi")))
    assert model.parameter_counts()["total"] == 110_447_326
    assert sum(p.numel() for _, p in model.named_trainable(model.stages()[0])) == 91_676_126


# --------------------------------------------------------------------- the release, transcribed
def official_forward(model: FaceDiffuser, x, t: int, audio, template, one_hot):
    """``FaceDiff.forward`` as released, batch 1: HuBERT on the raw waveform (normalised as the
    processor does), ``adjust_input_representation`` on its last hidden state, then the heads."""
    hubert = model.audio_encoder.model
    wav = (audio - audio.mean()) / torch.sqrt(audio.var(unbiased=False) + 1e-7)
    h = hubert(wav[None]).last_hidden_state
    if model.spec.fps == 25:  # ifps % ofps == 0
        if h.shape[1] % 2:
            h = h[:, :-1]
        if h.shape[1] > 2 * x.shape[1]:
            h = h[:, : 2 * x.shape[1]]
        elif h.shape[1] < 2 * x.shape[1]:
            x = x[:, : h.shape[1] // 2]
    else:
        h = F.interpolate(h.transpose(1, 2), size=2 * x.shape[1], align_corners=True, mode="linear")
        h = h.transpose(1, 2)
    n = x.shape[1]
    h = h.reshape(1, h.shape[1] // 2, h.shape[2] * 2)[:, :n]
    cond = model.cond_projection(h)
    time = model.time_mlp(torch.eye(model.config.diff_steps)[[t]])
    motion = model.input_projection(x.permute(1, 0, 2)).permute(1, 0, 2)
    z = torch.cat([cond, motion, time.repeat(1, n, 1)], dim=-1)
    z, _ = model.gru(model.norm_cond(z))
    z = z * model.obj_vector(one_hot)
    return model.final_layer(z) + template


@pytest.mark.parametrize("fps", [30.0, 25.0])
def test_denoiser_matches_the_release_forward(fps):
    model = tiny(fps)
    g = torch.Generator().manual_seed(1)
    audio = torch.randn(16000 + 123, generator=g)
    tpl = torch.randn(1, 60, generator=g)
    one_hot = torch.tensor([[0.0, 1.0, 0.0]])
    cond, frames = model.encode_audio(audio[None], torch.tensor([audio.shape[0]]), None)
    n = int(frames[0])
    x = torch.randn(1, n, 60, generator=g)
    with torch.no_grad():
        ours = model.denoise(x, torch.tensor([7]), cond[:, :n], tpl, one_hot)
        ref = official_forward(model, x, 7, audio, tpl, one_hot)
    assert ours.shape == ref.shape == (1, n, 60)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_schedule_has_the_spec_values():
    betas = cosine_betas(1000)
    a = np.cumprod(1 - betas)
    assert betas[0] == pytest.approx(4.13e-5, rel=1e-2) and betas[-1] == 0.999
    assert a[-1] == pytest.approx(2.4e-9, rel=0.05) and a[99] == pytest.approx(0.972, abs=1e-3)
    d = Diffusion.cosine(1000).respaced(50)
    assert d.timesteps == list(range(0, 1000, 20))
    np.testing.assert_allclose(d.alphas_cumprod, a[::20])


def reference_p_sample_loop(denoise, noises: list[torch.Tensor], steps: int) -> torch.Tensor:
    """guided-diffusion's p_sample_loop (FIXED_SMALL, x0 prediction) with its float64 constants."""
    b = cosine_betas(steps)
    a = np.cumprod(1 - b)
    a_prev = np.append(1.0, a[:-1])
    var = b * (1 - a_prev) / (1 - a)
    logvar = np.log(np.append(var[1], var[1:]))
    c1, c2 = b * np.sqrt(a_prev) / (1 - a), (1 - a_prev) * np.sqrt(1 - b) / (1 - a)
    x = noises[0]
    for k, i in enumerate(range(steps - 1, -1, -1)):
        def f(arr, i=i):
            return torch.from_numpy(arr)[torch.tensor([i])].float()

        x0 = denoise(x, i)
        mean = f(c1) * x0 + f(c2) * x
        x = mean + (1.0 if i > 0 else 0.0) * torch.exp(0.5 * f(logvar)) * noises[k + 1]
    return x


def test_reference_sampler_reproduces_p_sample_loop_on_fixed_noise():
    model = tiny(steps=12)
    audio, tpl = torch.randn(9000), torch.randn(20, 3)
    cond, _ = model._clip(audio, tpl)
    n = cond.shape[1]
    noises = [torch.randn(1, n, 60) for _ in range(13)]
    feed = iter(noises)
    one_hot = model.one_hot(torch.tensor([2]))

    def denoise(x, i):
        return model.denoise(x, torch.tensor([i]), cond, tpl.reshape(1, -1), one_hot)

    with torch.no_grad():
        ours = model.diffusion.p_sample_loop(denoise, lambda: next(feed))
        ref = reference_p_sample_loop(denoise, noises, 12)
    assert torch.equal(ours, ref)  # bit for bit: the in-place loop does the release's operations in order


def reference_ddim_sample_loop(denoise, noises: list[torch.Tensor], d: Diffusion, eta: float) -> torch.Tensor:
    """guided-diffusion's ddim_sample_loop (x0 prediction), out of place, a fresh draw at every step."""
    a = d.alphas_cumprod
    a_prev = np.append(1.0, a[:-1])
    x = noises[0]
    for k, i in enumerate(range(len(a) - 1, -1, -1)):
        def f(arr, i=i):
            return torch.from_numpy(np.asarray(arr))[torch.tensor([i])].float()

        x0 = denoise(x, d.timesteps[i])
        eps = (f(np.sqrt(1.0 / a)) * x - x0) / f(np.sqrt(1.0 / a - 1))
        sigma = eta * torch.sqrt((1 - f(a_prev)) / (1 - f(a))) * torch.sqrt(1 - f(a) / f(a_prev))
        x = x0 * torch.sqrt(f(a_prev)) + torch.sqrt(1 - f(a_prev) - sigma**2) * eps
        x = x + (1.0 if i > 0 else 0.0) * sigma * noises[k + 1]
    return x


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_ddim_reproduces_ddim_sample_loop_on_fixed_noise(eta):
    model = tiny(steps=12)
    audio, tpl = torch.randn(9000), torch.randn(20, 3)
    cond, _ = model._clip(audio, tpl)
    noises = [torch.randn(2, cond.shape[1], 60) for _ in range(7)]
    one_hot = model.one_hot(torch.tensor([1]))
    d = model.diffusion.respaced(6)

    def denoise(x, i):
        return model.denoise(x, torch.full((2,), i), cond, tpl.reshape(1, -1), one_hot)

    with torch.no_grad():
        ours = d.ddim_sample_loop(denoise, iter(noises).__next__, eta=eta)
        ref = reference_ddim_sample_loop(denoise, noises, d, eta)
    assert torch.equal(ours, ref)


def test_ddim_with_all_steps_and_eta_one_is_the_ancestral_chain():
    model = tiny(steps=12)
    audio, tpl = torch.randn(9000), torch.randn(20, 3)
    cond, _ = model._clip(audio, tpl)
    noises = [torch.randn(1, cond.shape[1], 60) for _ in range(13)]
    one_hot = model.one_hot(torch.tensor([0]))

    def denoise(x, i):
        return model.denoise(x, torch.tensor([i]), cond, tpl.reshape(1, -1), one_hot)

    with torch.no_grad():
        a = model.diffusion.p_sample_loop(denoise, iter(noises).__next__)
        d = model.diffusion.respaced(12).ddim_sample_loop(denoise, iter(noises).__next__, eta=1.0)
    torch.testing.assert_close(a, d, rtol=1e-4, atol=1e-5)


def test_truncated_chain_starts_small_around_zero():
    d = Diffusion.cosine(1000)
    seen = []

    def denoise(x, i):
        seen.append((i, float(x.std())))
        return torch.zeros_like(x)

    g = torch.Generator().manual_seed(0)
    d.truncated_loop(denoise, lambda: torch.randn(1, 400, 30, generator=g), skip=900)
    assert seen[0][0] == 99 and len(seen) == 100
    assert seen[0][1] == pytest.approx(math.sqrt(1 - d.alphas_cumprod[99]), rel=0.05)  # 0.167


# ------------------------------------------------------------------------------- loss, sampling
def test_untrained_model_predicts_the_template_and_the_loss_is_huber():
    model = tiny()
    torch.nn.init.zeros_(model.final_layer.weight)
    torch.nn.init.zeros_(model.final_layer.bias)
    from talkbench.datasets.batch import Batch

    t = 20
    tpl = torch.randn(1, 20, 3)
    verts = tpl[:, None] + torch.linspace(-2, 2, t)[None, :, None, None].expand(1, t, 20, 3)
    batch = Batch(audio=torch.randn(1, 16000), audio_lengths=torch.tensor([16000]), vertices=verts,
                  lengths=torch.tensor([t]), mask=torch.ones(1, t, dtype=torch.bool), template=tpl,
                  speaker=torch.tensor([1]), names=["c"], subjects=["b"])
    out = model.loss("train", batch)
    out_frames = model.encode_audio(batch.audio, batch.audio_lengths, batch.lengths)[1].item()
    gt = verts[:, : min(t, out_frames)].flatten(2)
    expected = F.huber_loss(tpl.flatten(1)[:, None].expand_as(gt), gt)  # errors beyond delta 1 included
    assert out_frames == t
    torch.testing.assert_close(out["loss"], expected)
    assert model.validation_loss("train", batch)["loss"] == model.validation_loss("train", batch)["loss"]


def test_samples_replay_by_seed_whatever_n_and_order():
    model = tiny(batch_samples=False)
    audio, tpl = torch.randn(12000), torch.randn(20, 3)
    a = model.predict_samples(audio, tpl, 1, [11, 22, 33])
    b = model.predict_samples(audio, tpl, 1, [33, 11])
    assert torch.equal(a[0], b[1]) and torch.equal(a[2], b[0])
    assert not torch.equal(a[0], a[1])  # different seeds, different animations
    model.config.batch_samples = True  # one batch: the same up to float rounding
    torch.testing.assert_close(model.predict_samples(audio, tpl, 1, [33, 22, 11]), a.flip(0), rtol=1e-5,
                               atol=1e-6)
    torch.testing.assert_close(model.predict(audio, tpl, 1), model.predict_samples(audio, tpl, 1, [0])[0])


def _clips(n=2, frames=20, v=20):
    from types import SimpleNamespace

    g = np.random.default_rng(0)
    tpl = g.normal(size=(v, 3)).astype(np.float32)
    return [SimpleNamespace(audio=g.normal(size=frames * 16000 // 30).astype(np.float32), template=tpl,
                            vertices=tpl + 1e-3 * g.normal(size=(frames, v, 3)).astype(np.float32))
            for _ in range(n)]


def test_noise_dependence_finds_a_motion_branch_gated_off_and_its_identical_samples():
    """The diagnostic behind issue 26's identical samples: with the motion branch's bias far below the
    ReLU, x0_hat ignores x_t at every step (first step using it: T) and the samples are bit-identical;
    with it on, x0_hat moves with x_t from t = 0 and the samples differ. (Unbatched: rows of one batch
    may round apart.)"""
    model = tiny(steps=12, batch_samples=False)
    clip = _clips()[0]
    audio, tpl = torch.tensor(clip.audio), torch.tensor(clip.template)
    with torch.no_grad():
        model.input_projection[1].bias.fill_(-10.0)
    (diag,) = model.diagnostics([], _clips())
    assert diag.name == "noise_dependence" and diag.content["clips"] == 2
    assert diag.metrics == {"x0_spread_t0": 0.0, "motion_units_on_t0": 0.0, "first_step_using_x_t": 12.0}
    assert diag.content["independent_of_x_t_at"] == [0, 1, 2, 5, 10, 11]
    samples = model.predict_samples(audio, tpl, 0, [1, 2, 3])
    assert torch.equal(samples[0], samples[1]) and torch.equal(samples[0], samples[2])
    with torch.no_grad():
        model.input_projection[1].bias.fill_(10.0)
    (diag,) = model.diagnostics([], _clips())
    assert diag.metrics["x0_spread_t0"] > 0 and diag.metrics["first_step_using_x_t"] == 0.0
    assert diag.metrics["motion_units_on_t0"] > 0.4  # ReLU then MaxPool then ReLU: about half survive
    samples = model.predict_samples(audio, tpl, 0, [1, 2])
    assert not torch.equal(samples[0], samples[1])


@pytest.mark.parametrize("sampler", ["ancestral", "ddim-4", "trunc-8"])
def test_audio_is_encoded_once_per_clip(sampler):
    model = tiny(steps=12, sampler=sampler, eta=0.5 if sampler.startswith("ddim") else 0.0)
    calls = []
    model.audio_encoder.register_forward_hook(lambda *a: calls.append(1))
    out = model.predict_samples(torch.randn(8000), torch.randn(20, 3), "b", [1, 2, 3, 4])
    assert len(calls) == 1 and out.shape[0] == 4 and torch.isfinite(out).all()
    assert model.config.sampler_id.split("-")[0] == sampler.split("-")[0]


def test_samples_under_several_conditions_encode_the_audio_once():
    model = tiny(batch_samples=False)
    audio, tpl = torch.randn(8000), torch.randn(20, 3)
    calls = []
    model.audio_encoder.register_forward_hook(lambda *a: calls.append(1))
    out = model.predict_condition_samples(audio, tpl, ["a", "b"], [[1, 2], [3, 4]])
    assert len(calls) == 1 and out.shape[:2] == (2, 2)
    assert torch.equal(out[1], model.predict_samples(audio, tpl, "b", [3, 4]))


def test_bad_sampler_and_condition_are_named():
    from talkbench.errors import ConfigError, TalkbenchError

    with pytest.raises(ConfigError, match="facediffuser.sampler 'ddpm'"):
        FaceDiffuserConfig(sampler="ddpm")
    with pytest.raises(ConfigError, match="ddim-7"):
        tiny(steps=12, sampler="ddim-7")
    with pytest.raises(TalkbenchError, match="condition must be 0..2"):
        tiny().predict(torch.randn(8000), torch.randn(20, 3), 5)


# ----------------------------------------------------------------------------- official checkpoints
def test_official_checkpoint_round_trips_with_legacy_names(tmp_path):
    from talkbench.errors import TalkbenchError
    from talkbench.methods import official as common
    from talkbench.methods.facediffuser import official

    model = tiny()
    path = official.save_official(model, tmp_path / "pretrained_unit.pth")
    saved = torch.load(path, weights_only=True)
    assert {k.split(".")[0] for k in saved} == {"audio_encoder", "cond_projection", "input_projection",
                                               "time_mlp", "norm_cond", "gru", "obj_vector", "final_layer"}
    assert "audio_encoder.encoder.pos_conv_embed.conv.weight_g" in saved  # the published names
    assert saved["input_projection.1.weight"].shape == (1, 1, 9)
    assert common.identify(saved) == "facediffuser"
    assert official.dims(saved) == {"diff_steps": 12, "latent_dim": 16, "gru_dim": 16, "vertices_x3": 60,
                                    "speakers": 3}
    fresh = tiny()
    torch.nn.init.zeros_(fresh.final_layer.weight)
    fresh.load_state_dict(official.import_checkpoint(fresh, path))
    fresh.eval()
    audio, tpl = torch.randn(9000), torch.randn(20, 3)
    s = [3, 4]
    assert torch.equal(model.predict_samples(audio, tpl, 0, s), fresh.predict_samples(audio, tpl, 0, s))
    with pytest.raises(TalkbenchError, match="diff_steps 12 \\(preset 20\\)"):
        official.import_checkpoint(tiny(steps=20), path)


def test_tiny_preset_trains_validates_on_unseen_speakers_and_scores(synthtalk_tiny):
    """SynthTalk's validation speakers are unseen: their clips are scored under every training
    condition (as the release's validation loop does) instead of failing the run."""
    import mlflow

    from talkbench import pipeline
    from talkbench.config import load_config

    cfg = load_config("facediffuser", preset="tiny", data_root=synthtalk_tiny,
                      overrides=["facediffuser.epochs=1"])
    result = pipeline.run(cfg, progress=False)
    metrics = mlflow.MlflowClient(result.tracking_uri).get_run(result.run_id).data.metrics
    assert np.isfinite(metrics["test/lve"]), sorted(metrics)
    assert np.isfinite(metrics["train/val/loss"]), sorted(metrics)
    steps = metrics["diagnostic/first_step_using_x_t"]  # the noise-dependence diagnostic is logged
    assert 0 <= steps <= cfg.method_config.diff_steps and np.isfinite(metrics["diagnostic/x0_spread_t0"])
