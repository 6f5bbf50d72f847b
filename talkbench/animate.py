"""Animate any WAV with a trained method: audio and template loading, prediction, .npy and MP4 output.

The library behind ``bench animate`` (no CLI, no tracking). Conventions:

- audio: any sample rate, channel count and length; mixed down to mono (channel mean) and
  resampled to 16 kHz with the dataset layer's polyphase resampler; :func:`load_audio` says once
  what it did;
- template: a (V, 3) array, or a .npy / .obj / .ply file with the model's vertex count. Choosing a
  default template (a training speaker's, stored with the model) is the caller's job;
- conditions: training-speaker names (or indices) for methods with ``uses_speaker_id``; ``None``
  means the first training speaker, ``"all"`` every one of them. Audio-only methods take none;
- outputs: ``<name>[_condition_<X>].npy`` (contract.prediction_file) and the same stem ``.mp4``
  with the audio, rendered with the dataset's camera when the spec has faces. A method predicting
  blendshapes writes its weights beside them: ``<stem>.blendshapes.npy`` (T, K),
  ``<stem>.blendshapes.csv`` (a ``frame,time`` column pair then one column per channel, in ARKit's
  names) and ``<stem>.blendshapes.json`` (a three.js AnimationClip: ``THREE.AnimationClip.parse``
  gives one ``.morphTargetInfluences[<name>]`` number track per channel, times in seconds, for an
  AnimationMixer on a mesh whose morph targets carry the ARKit names); the ``.npy`` meshes and the
  video are the weights through the model's rig (the first training speaker's shapes) when it has one.
  Weights are written as predicted (not clamped to [0, 1]). A method that samples (FaceDiffuser,
  CodeTalker-ND) writes ``<stem>_sample<k>.npy``/``.mp4`` per sample and ``<name>.seeds.csv``.

Out-of-domain audio: :func:`audio_profile` summarises a clip with three cheap statistics over its
active (non-silent) frames: the median spectral centroid (Hz), the log10 median spectral flatness
(pure tones -> very negative, white noise -> 0) and the log10 median share of energy above 4 kHz
(fricatives and breath: real speech has far more than synthetic buzz). :func:`audio_reference`
stores their mean and standard deviation over the training clips; :func:`domain_warnings` flags a
statistic more than 4 standard deviations from the training mean (the deviation floored at 5 % of
the mean centroid and at 0.05 decades for the log statistics, so a very uniform training set does
not flag every input). A flagged input
is animated anyway: the warning says the result may be poor. It is a coarse screen, not a
detector: it catches another kind of audio (real speech for a SynthTalk model, music, noise), not
a new speaker of the same kind.
"""

from __future__ import annotations

import csv
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from talkbench.audio.signal import read_audio_raw, resample
from talkbench.contract import PREDICTION_SUFFIX, prediction_file
from talkbench.errors import ConfigError, DataError, TalkbenchError
from talkbench.meshio import read_vertices

log = logging.getLogger("talkbench.animate")

SAMPLE_RATE = 16_000
_FRAME, _HOP = 400, 160  # 25 ms windows every 10 ms at 16 kHz
_SILENCE_DB = -40.0  # frames this far below the loudest frame count as silence
_HIGH_HZ = 4000.0
STATISTICS = ("centroid_hz", "log_flatness", "log_high_band")
_MAX_Z = 4.0


# -------------------------------------------------------------------------------------------- audio
def load_audio(path: str | Path) -> tuple[np.ndarray, str]:
    """(float32 mono audio at 16 kHz, one line saying what was read and done to it)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such audio file")
    audio, rate = read_audio_raw(path)  # one DataError naming the file for unreadable / empty input
    channels = sf.info(str(path)).channels
    done = []
    if channels > 1:
        done.append(f"{channels} channels mixed down to mono")
    if rate != SAMPLE_RATE:
        audio = resample(audio, rate)
        done.append(f"resampled {rate} Hz -> {SAMPLE_RATE} Hz")
    what = ", ".join(done) if done else "16 kHz mono, used as is"
    note = f"{path}: {len(audio) / SAMPLE_RATE:.2f} s ({what})"
    return np.ascontiguousarray(audio, np.float32), note


def load_template(path: str | Path, n_vertices: int) -> np.ndarray:
    """(V, 3) float32 template from .npy, .obj or .ply; V must be the model's vertex count."""
    verts = read_vertices(path)
    if verts.shape[0] != n_vertices:
        raise DataError(
            f"{path}: the template has {verts.shape[0]} vertices; the model animates meshes of "
            f"{n_vertices} vertices (the dataset's topology)"
        )
    return verts


# ----------------------------------------------------------------------------------- domain check
def audio_profile(audio: np.ndarray) -> dict[str, float]:
    """The three statistics of the module docstring for 16 kHz mono audio."""
    audio = np.asarray(audio, np.float64)
    if len(audio) < _FRAME:
        audio = np.pad(audio, (0, _FRAME - len(audio)))
    n = 1 + (len(audio) - _FRAME) // _HOP
    idx = np.arange(_FRAME)[None] + _HOP * np.arange(n)[:, None]
    power = np.abs(np.fft.rfft(audio[idx] * np.hanning(_FRAME)[None], axis=1)) ** 2 + 1e-12
    energy_db = 10 * np.log10(power.sum(1))
    p = power[energy_db > energy_db.max() + _SILENCE_DB]
    freqs = np.fft.rfftfreq(_FRAME, 1 / SAMPLE_RATE)
    total = p.sum(1)
    return {
        "centroid_hz": float(np.median((p * freqs).sum(1) / total)),
        "log_flatness": float(np.log10(np.median(np.exp(np.log(p).mean(1)) / p.mean(1)))),
        "log_high_band": float(np.log10(np.median(p[:, freqs >= _HIGH_HZ].sum(1) / total))),
    }


def audio_reference(clips: Iterable[np.ndarray]) -> dict[str, list[float]]:
    """[mean, std] of each statistic over the training clips (JSON-ready, stored with a model)."""
    profiles = [audio_profile(a) for a in clips]
    if not profiles:
        raise TalkbenchError("audio_reference needs at least one training clip")
    out = {}
    for key in STATISTICS:
        values = np.array([p[key] for p in profiles])
        out[key] = [float(values.mean()), float(values.std())]
    return out


def _spread(key: str, mean: float, std: float) -> float:
    """The training audio's sd of a statistic, floored (5 % of the mean; 0.05 decades)."""
    return max(std, 0.05 * abs(mean) if key == "centroid_hz" else 0.05, 1e-6)


def domain_bounds(reference: dict[str, Sequence[float]]) -> dict[str, tuple[float, float]]:
    """The range of each statistic that :func:`domain_warnings` lets through (the model card's)."""
    out = {}
    for key in STATISTICS:
        if key in reference:
            mean, std = reference[key]
            out[key] = (mean - _MAX_Z * _spread(key, mean, std), mean + _MAX_Z * _spread(key, mean, std))
    return out


def domain_warnings(profile: dict[str, float], reference: dict[str, Sequence[float]]) -> list[str]:
    """One message per statistic more than 4 (floored) standard deviations from the training mean;
    empty when the audio looks like the training audio."""
    out = []
    for key in STATISTICS:
        if key not in reference:
            continue
        mean, std = reference[key]
        z = (profile[key] - mean) / _spread(key, mean, std)
        if abs(z) > _MAX_Z:
            out.append(f"{key} {profile[key]:.3g} is {z:+.1f} sd from the training audio's {mean:.3g}")
    return out


# ---------------------------------------------------------------------------------------- animate
@dataclass
class Animation:
    """What :func:`animate` wrote and what it noticed."""

    predictions: dict[str | None, Path] = field(default_factory=dict)  # condition -> .npy
    videos: dict[str | None, Path] = field(default_factory=dict)  # condition -> .mp4
    # a method that samples: condition -> one .npy (and .mp4) per sample, and the seeds' CSV
    samples: dict[str | None, list[Path]] = field(default_factory=dict)
    sample_videos: dict[str | None, list[Path]] = field(default_factory=dict)
    seeds: Path | None = None
    weights: dict[str | None, list[Path]] = field(default_factory=dict)  # condition -> .npy, .csv, .json
    n_frames: int = 0
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def resolve_conditions(method, conditions) -> list[str | None]:
    """Condition names for a model: None -> the first training speaker (or no condition for
    audio-only methods), ``"all"`` -> every training speaker, names or indices -> names."""
    speakers = list(method.spec.train_subjects)
    if not method.uses_speaker_id:
        if conditions not in (None, "all") and list(conditions) != [None]:
            raise ConfigError(
                f"{method.name} animates from audio alone; it takes no condition, got {conditions!r}"
            )
        return [None]
    if conditions is None:
        return [speakers[0]]
    if conditions == "all":
        return speakers
    if isinstance(conditions, str | int):
        conditions = [conditions]
    out = []
    for c in conditions:
        if isinstance(c, int) and 0 <= c < len(speakers):
            out.append(speakers[c])
        elif c in speakers:
            out.append(c)
        else:
            raise ConfigError(
                f"condition {c!r} is not a training speaker of this {method.name} model; "
                f"expected 'all' or one of {', '.join(speakers)}"
            )
    return out


def animate(
    method,
    spec,
    audio: np.ndarray | str | Path,
    template: np.ndarray | str | Path,
    conditions=None,
    out_dir: str | Path = ".",
    render: bool = True,
    name: str | None = None,
    reference: dict | None = None,
    progress: Callable[[str], None] | None = None,
    samples: int = 1,
    seed: int = 0,
) -> Animation:
    """Predict the vertices of ``audio`` once per condition (one ``predict_conditions`` call), save
    them as .npy and, with ``render``, as MP4s with the audio.

    ``audio``/``template``: arrays (16 kHz mono float32; (V, 3)) or files (see module docstring).
    ``reference``: the training audio's :func:`audio_reference`; None skips the domain check.
    ``progress``: called with short status lines (rendering reports every 10 %); default: logging.
    ``samples``: a method that samples draws that many per condition, sample k seeded
    ``sample_seed(seed, name, condition, k)``, written as ``<stem>_sample<k>.npy``/``.mp4`` with
    ``<name>.seeds.csv`` listing condition, sample, seed and file (so each one replays); a
    deterministic method animates once whatever ``samples`` (a note says so).
    """
    say = progress or log.info
    result = Animation()
    if samples < 1:
        raise ConfigError(f"--samples {samples}: expected at least 1 animation per condition")
    sampling = bool(getattr(method, "samples", False))
    if sampling and getattr(method, "target", "vertices") == "blendshapes":
        raise ConfigError(f"{method.name}: sampling blendshape weights is not supported")
    if samples > 1 and not sampling:
        result.notes.append(f"{method.name} is deterministic: one animation per condition, not {samples}")
    if isinstance(audio, str | Path):
        name = name or Path(audio).stem
        audio, note = load_audio(audio)
        result.notes.append(note)
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1:
        raise DataError(f"animate: audio must be mono (S,) at 16 kHz, got shape {audio.shape}")
    min_samples = int(np.ceil(SAMPLE_RATE / spec.fps)) + 400
    if len(audio) < min_samples:
        raise DataError(
            f"{name or 'audio'}: {len(audio) / SAMPLE_RATE:.3f} s is too short to animate; expected at least "
            f"{min_samples / SAMPLE_RATE:.3f} s (one frame at {spec.fps:g} fps)"
        )
    if isinstance(template, str | Path):
        template = load_template(template, spec.n_vertices)
    template = np.asarray(template, np.float32)
    if template.shape != (spec.n_vertices, 3):
        raise DataError(f"animate: template must have shape ({spec.n_vertices}, 3), got {template.shape}")
    name = name or "animation"
    if reference is not None:
        result.warnings = domain_warnings(audio_profile(audio), reference)
        if result.warnings:
            log.warning(
                "%s looks unlike the audio this model was trained on (%s); the animation may be poor",
                name, "; ".join(result.warnings),
            )  # fmt: skip
    names = resolve_conditions(method, conditions)
    indices = [None if c is None else spec.train_subjects.index(c) for c in names]
    say(f"predicting {len(audio) / SAMPLE_RATE:.1f} s of audio for {len(names)} condition(s)")
    device = method.device
    audio_t, template_t = torch.from_numpy(audio).to(device), torch.from_numpy(template).to(device)
    with torch.no_grad():
        if sampling:
            from talkbench.methods.base import sample_seeds

            seeds = [sample_seeds(seed, name, c, samples) for c in names]
            out = method.predict_condition_samples(audio_t, template_t, indices, seeds).flatten(0, 1)
        else:
            out = method.predict_conditions(audio_t, template_t, indices)
    predicted = out.detach().cpu().numpy().astype(np.float32)
    result.n_frames = int(predicted.shape[1])
    if sampling:
        return _write_samples(result, predicted, names, seeds, name, Path(out_dir), audio, template, spec,
                              render, say)  # fmt: skip
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if getattr(method, "target", "vertices") != "blendshapes":
        vertices = predicted
    else:
        for cond, w in zip(names, predicted):
            stem = out_dir / prediction_file(name, cond)
            result.weights[cond] = write_weights(stem.with_suffix(""), w, spec.channels, spec.fps)
        if spec.rig is None:
            result.notes.append(f"dataset '{spec.name}' has no rig: weights written, no meshes or video")
            return result
        shapes = spec.rig.subjects[0]  # the first training speaker's blendshapes
        vertices = np.stack([spec.rig.decode(w, template, shapes) for w in predicted]).astype(np.float32)
        result.notes.append(f"meshes: the weights through the rig with training speaker {shapes}'s shapes")
    for cond, verts in zip(names, vertices):
        path = out_dir / prediction_file(name, cond)
        np.save(path, verts)
        result.predictions[cond] = path
    if render:
        if spec.faces is None or len(spec.faces) == 0:
            result.notes.append(f"dataset '{spec.name}' has no faces: vertices saved, no video rendered")
        else:
            for cond, verts in zip(names, vertices):
                result.videos[cond] = _render(verts, template, audio, spec, result.predictions[cond], say)
    return result


def _write_samples(
    result: Animation, predicted, names, seeds, name, out_dir: Path, audio, template, spec, render, say
) -> Animation:
    """``<stem>_sample<k>.npy`` (and .mp4) per condition and sample, and ``<name>.seeds.csv``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    n = len(seeds[0])
    rows = []
    for j, (cond, cond_seeds) in enumerate(zip(names, seeds)):
        stem = prediction_file(name, cond).removesuffix(PREDICTION_SUFFIX)
        for k, s in enumerate(cond_seeds):
            path = out_dir / f"{stem}_sample{k}{PREDICTION_SUFFIX}"
            np.save(path, predicted[j * n + k])
            result.samples.setdefault(cond, []).append(path)
            rows.append(("" if cond is None else cond, k, s, path.name))
    result.seeds = out_dir / f"{name}.seeds.csv"
    with open(result.seeds, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["condition", "sample", "seed", "file"])
        writer.writerows(rows)
    if render and (spec.faces is None or len(spec.faces) == 0):
        result.notes.append(f"dataset '{spec.name}' has no faces: vertices saved, no video rendered")
    elif render:
        for j, cond in enumerate(names):
            result.sample_videos[cond] = [
                _render(predicted[j * n + k], template, audio, spec, path, say)
                for k, path in enumerate(result.samples[cond])
            ]
    return result


def write_weights(stem: Path, weights: np.ndarray, channels: Sequence[str], fps: float) -> list[Path]:
    """``<stem>.blendshapes.npy``, ``.csv`` and ``.json`` (see the module docstring) of (T, K) weights."""
    weights = np.asarray(weights, np.float32)
    if weights.ndim != 2 or weights.shape[1] != len(channels):
        raise DataError(f"{stem}: weights of shape {weights.shape}; expected (T, {len(channels)})")
    npy, table, clip = (stem.with_name(f"{stem.name}.blendshapes{ext}") for ext in (".npy", ".csv", ".json"))
    np.save(npy, weights)
    times = np.arange(len(weights)) / fps
    with open(table, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["frame", "time", *channels])
        for t, (s, row) in enumerate(zip(times, weights)):
            writer.writerow([t, f"{s:.6f}", *(f"{x:.6f}" for x in row)])
    seconds = [round(float(x), 6) for x in times]
    tracks = [
        {"name": f".morphTargetInfluences[{c}]", "type": "number", "times": seconds,
         "values": [round(float(x), 6) for x in weights[:, k]]}
        for k, c in enumerate(channels)
    ]  # fmt: skip
    animation = {
        "name": stem.name,
        "duration": round(len(weights) / fps, 6),
        "tracks": tracks,
        "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"talkbench/{stem.name}")),
        "blendMode": 2500,  # THREE.NormalAnimationBlendMode
    }
    clip.write_text(json.dumps(animation))
    return [npy, table, clip]


def _render(vertices, template, audio, spec, npy: Path, say: Callable[[str], None]) -> Path:
    from talkbench.render import camera_for, render_side_by_side

    out = npy.with_suffix(".mp4")
    step = max(1, len(vertices) // 10)

    def report(done: int, total: int) -> None:
        if done % step == 0 or done == total:
            say(f"rendering {out.name}: {done}/{total} frames")

    return render_side_by_side(
        [(None, vertices)], spec.faces, out, spec.fps, camera_for(spec.name), audio=audio,
        template=template, progress=report,
    )  # fmt: skip
