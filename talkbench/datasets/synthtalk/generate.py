"""Writing a SynthTalk dataset (prepared-VOCASET layout) and the parameter-hash cache around it."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf

from talkbench.datasets.rig import FILE as RIG_FILE
from talkbench.datasets.rig import Rig
from talkbench.errors import ConfigError, DataError
from talkbench.paths import synthtalk_cache
from talkbench.progress import TerminalBar

from .articulation import animate, weights
from .blendshapes import ARKIT_CHANNELS, ARKIT_MAP, arkit_deltas, arkit_weights, fields, lip_closure
from .face import REGION_NAMES, Topology, build_topology, graded_grid_for, grid_for, template
from .sentences import Segment, make_sentence, timing
from .speakers import Speaker, make_speaker
from .speech import SR, synthesize

log = logging.getLogger(__name__)

GENERATOR_VERSION = "1.1"
CAPTURE_FPS = 60
FPS = 30


@dataclass(frozen=True)
class Preset:
    name: str
    n_vertices: int
    n_train: int
    n_val: int
    n_test: int
    n_sentences: int
    n_shared: int  # sentences 1..n_shared have the same text for every speaker
    words: tuple[int, int]  # words per sentence (inclusive range); sets the mean length

    @property
    def n_speakers(self) -> int:
        return self.n_train + self.n_val + self.n_test


PRESETS: dict[str, Preset] = {
    "tiny": Preset("tiny", 200, 4, 1, 1, 6, 3, (2, 3)),
    "small": Preset("small", 1000, 8, 2, 2, 40, 20, (4, 7)),
    "full": Preset("full", 5023, 8, 2, 2, 40, 20, (6, 9)),
}


@dataclass(frozen=True)
class Variant:
    """A version of SynthTalk. Each variant's speakers are their own people (speaker streams offset by
    ``speaker_offset``, names prefixed ``prefix``), so its train split shares no speaker, and its test
    split no sentence text, with another variant's test split (held-out sentences are speaker-specific;
    the shared sentences 1..n_shared are training text in every variant)."""

    name: str
    prefix: str
    speaker_offset: int
    layout: str  # the face mesh: "grid" or "graded" (face.build_topology)
    blendshapes: bool  # targets are the rig's weights in ARKit names (blendshapes_npy/, rig.npz)

    def topology(self, p: Preset) -> Topology:
        if self.layout == "graded":
            return build_topology(*graded_grid_for(TOPOLOGY2_VERTICES[p.name]), layout="graded")
        return build_topology(*grid_for(p.n_vertices))


VARIANTS: dict[str, Variant] = {
    "main": Variant("main", "SynthTalk", 0, "grid", False),
    # a second mesh of the same face: other vertex count, ordering, spacing and triangulation
    "topology2": Variant("topology2", "SynthTalkT2", 1000, "graded", False),
    # the generator's own rig weights as targets, in ARKit channel names, beside the meshes
    "blendshape": Variant("blendshape", "SynthTalkBS", 2000, "grid", True),
}
TOPOLOGY2_VERTICES = {"tiny": 300, "small": 1500, "full": 6172}


def get_variant(variant: str) -> Variant:
    try:
        return VARIANTS[variant]
    except KeyError:
        msg = f"synthtalk variant: unknown {variant!r}, expected one of {sorted(VARIANTS)}"
        raise ConfigError(msg) from None


def dataset_name(variant: str) -> str:
    """The registered dataset (and MLflow experiment) of a variant: synthtalk, synthtalk-topology2, ..."""
    return "synthtalk" if variant == "main" else f"synthtalk-{variant}"


def get_preset(preset: str) -> Preset:
    try:
        return PRESETS[preset]
    except KeyError:
        msg = f"synthtalk preset: unknown {preset!r}, expected one of {sorted(PRESETS)}"
        raise ConfigError(msg) from None


def _check(seed: int, style_coupling: float) -> None:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"synthtalk seed: expected a non-negative integer, got {seed!r}")
    try:
        ok = 0.0 <= float(style_coupling) <= 1.0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"synthtalk style_coupling: expected a value in [0, 1], got {style_coupling!r}")


def subject_name(index: int, variant: str = "main") -> str:
    return f"{VARIANTS[variant].prefix}_S{index + 1:02d}"


def _rng(*key: int) -> np.random.Generator:
    """An independent stream per (purpose, speaker, sentence): results do not depend on loop order."""
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def speaker(
    seed: int, index: int, style_coupling: float, split: str = "extra", variant: str = "main"
) -> Speaker:
    stream = index + VARIANTS[variant].speaker_offset
    return make_speaker(_rng(seed, 1, stream), subject_name(index, variant), split, style_coupling)


def sentence_tokens(p: Preset, seed: int, index: int, sentence: int):
    """Shared text for sentences 1..n_shared, speaker-specific text after."""
    rng = _rng(seed, 2, sentence) if sentence <= p.n_shared else _rng(seed, 3, index, sentence)
    lo, hi = p.words
    return make_sentence(rng, int(rng.integers(lo, hi + 1)))


def clip_audio(
    p: Preset, seed: int, spk: Speaker, index: int, sentence: int
) -> tuple[list[Segment], np.ndarray]:
    """One clip's timed phonemes and audio; cheap enough to sample many speakers' voices in tests."""
    segs = timing(sentence_tokens(p, seed, index, sentence), spk.voice.rate, _rng(seed, 4, index, sentence))
    return segs, synthesize(segs, spk.voice, _rng(seed, 5, index, sentence))


def _splits(p: Preset, variant: str = "main") -> dict:
    names = [subject_name(i, variant) for i in range(p.n_speakers)]
    tr, va = p.n_train, p.n_train + p.n_val
    held = [p.n_shared + 1, p.n_sentences]
    return {
        "train": {"subjects": names[:tr], "sentences": [1, p.n_sentences]},
        "val": {"subjects": names[tr:va], "sentences": held},
        "test": {"subjects": names[va:], "sentences": held},
    }


def generation_params(p: Preset, variant: str = "main") -> dict:
    """Every parameter that shapes the output (logged in synthtalk.json and hashed into the cache key)."""
    from . import articulation, blendshapes, speakers, speech

    v = get_variant(variant)
    extra = {}
    if variant != "main":  # the main variant's parameters (and cache key) are those of before variants
        grid = graded_grid_for(TOPOLOGY2_VERTICES[p.name]) if v.layout == "graded" else grid_for(p.n_vertices)
        extra = {"variant": asdict(v), "grid": list(grid)}
        if v.blendshapes:
            extra["arkit"] = {k: [list(x) for x in m] for k, m in ARKIT_MAP.items()}
            extra["arkit_partition"] = [blendshapes.SIDE_WIDTH, blendshapes.INNER_BROW]
    return {
        **asdict(p),
        "words": list(p.words),
        "grid": list(grid_for(p.n_vertices)),
        "sample_rate": SR,
        "filter_block": speech.BLOCK,
        "accent_f0": speech.ACCENT_F0,
        "omega": dict(articulation.OMEGA),
        "lead": articulation.LEAD,
        "press": [articulation.PRESS_TARGET, articulation.PRESS_ON, articulation.PRESS_OFF],
        "jaw_angle": blendshapes.JAW_ANGLE,
        "latent_dim": speakers.LATENT_DIM,
        "style_directions": {k: list(v) for k, v in speakers.STYLE_DIRS.items()},
    } | extra


def _dump_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, sort_keys=True, indent=1) + "\n")


def n_clips(p: Preset) -> int:
    return sum(
        len(sp["subjects"]) * (sp["sentences"][1] - sp["sentences"][0] + 1) for sp in _splits(p).values()
    )


def generate(
    out_dir: str | Path,
    preset: str = "small",
    seed: int = 0,
    style_coupling: float = 0.8,
    progress: Callable[[int, int], None] | None = None,
    variant: str = "main",
) -> Path:
    """Generate a SynthTalk dataset into out_dir (created; must be empty or absent). Deterministic.

    ``progress(done, total)`` is called after each clip. ``variant``: see :data:`VARIANTS`.
    """
    p = get_preset(preset)
    v = get_variant(variant)
    _check(seed, style_coupling)
    style_coupling = float(style_coupling)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"synthtalk output {out}: exists and is not a directory")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"synthtalk output {out}: directory exists and is not empty")
    subs = ("wav", "vertices_npy", "regions", "alignments") + (("blendshapes_npy",) if v.blendshapes else ())
    for sub in subs:
        (out / sub).mkdir(parents=True, exist_ok=True)

    topo = v.topology(p)
    splits = _splits(p, variant)
    split_of = {s: name for name, sp in splits.items() for s in sp["subjects"]}
    names = [subject_name(i, variant) for i in range(p.n_speakers)]
    speakers = [speaker(seed, i, style_coupling, split_of[n], variant) for i, n in enumerate(names)]
    templates, rig_deltas = {}, {}
    done, total = 0, n_clips(p)
    for i, spk in enumerate(speakers):
        stream = i + v.speaker_offset  # the random streams of this speaker's clips
        tmpl = template(topo, spk.shape)
        templates[spk.name] = tmpl
        field_stack = fields(topo, tmpl, spk.style.asymmetry)
        if v.blendshapes:
            rig_deltas[spk.name] = arkit_deltas(topo, field_stack).astype(np.float32)
        lo, hi = splits[spk.split]["sentences"]
        for sentence in range(lo, hi + 1):
            clip = f"{spk.name}_sentence{sentence:02d}"
            segs, audio = clip_audio(p, seed, spk, stream, sentence)
            n_frames = int(round(segs[-1].end * CAPTURE_FPS))
            w, closure = weights(segs, spk.style, n_frames, CAPTURE_FPS, _rng(seed, 6, stream, sentence))
            verts = animate(tmpl, field_stack, topo, w, closure)
            sf.write(out / "wav" / f"{clip}.wav", audio, SR, subtype="PCM_16")
            np.save(out / "vertices_npy" / f"{clip}.npy", verts.reshape(n_frames, -1))
            if v.blendshapes:
                np.save(out / "blendshapes_npy" / f"{clip}.npy", arkit_weights(w).astype(np.float32))
            _dump_json(
                out / "alignments" / f"{clip}.json",
                {
                    "name": clip,
                    "segments": [
                        {
                            "phoneme": s.symbol,
                            "category": s.category,
                            "start": s.start,
                            "end": s.end,
                            "accent": s.accent,
                        }
                        for s in segs
                    ],
                },
            )
            done += 1
            if progress is not None:
                progress(done, total)

    with open(out / "templates.pkl", "wb") as f:
        pickle.dump(templates, f, protocol=4)
    np.save(out / "faces.npy", topo.faces)
    for name in REGION_NAMES:
        np.save(out / "regions" / f"{name}.npy", topo.regions[name])
    extra = {}
    if variant != "main":
        extra = {"variant": variant, "dataset": dataset_name(variant)}
    if v.blendshapes:
        closure = lip_closure(topo, ARKIT_CHANNELS.index("mouthClose"))
        np.savez(out / RIG_FILE, **Rig(ARKIT_CHANNELS, rig_deltas, closure).to_arrays())
        extra |= {"target": "blendshapes", "channels": list(ARKIT_CHANNELS)}
    meta = extra | {
        "generator_version": GENERATOR_VERSION,
        "source_digest": source_digest(),
        "preset": p.name,
        "seed": int(seed),
        "style_coupling": style_coupling,
        "params": generation_params(p, variant),
        "fps": FPS,
        "capture_fps": CAPTURE_FPS,
        "n_vertices": topo.n_vertices,
        "unit": "m",
        "split": splits,
        "train_subjects": splits["train"]["subjects"],
        "mouth_pair": [topo.mouth_pair[0].tolist(), topo.mouth_pair[1].tolist()],
        "speakers": {s.name: s.to_json() for s in speakers},
        "regions": list(REGION_NAMES),
    }
    _dump_json(out / "synthtalk.json", meta)  # written last: its presence marks a complete dataset
    return out


@lru_cache(maxsize=1)
def source_digest() -> str:
    """Hash of the generator's own source: a code change can never reuse a stale cached dataset."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def cache_key(preset: str, seed: int, style_coupling: float, variant: str = "main") -> str:
    p = get_preset(preset)
    _check(seed, style_coupling)
    blob = json.dumps(
        {
            "v": GENERATOR_VERSION,
            "params": generation_params(p, variant),
            "seed": int(seed),
            "coupling": float(style_coupling),
            "source": source_digest(),
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(blob.encode()).hexdigest()[:12]
    prefix = "" if variant == "main" else f"{variant}-"
    return f"{prefix}{p.name}-seed{int(seed)}-c{float(style_coupling):g}-{digest}"


def cache_root() -> Path:
    return synthtalk_cache()


def ensure_synthtalk(
    preset: str = "small", seed: int = 0, style_coupling: float = 0.8, variant: str = "main"
) -> Path:
    """Path of the cached dataset for these parameters, generating it (atomically) on first use.

    A generation writes into ``.tmp-*/dataset`` (the folder also records its owner) and renames it
    into place when complete; folders of dead generations are removed by the next one. Write
    failures (full disk, read-only home) are one DataError naming the folder.
    """
    final = cache_root() / cache_key(preset, seed, style_coupling, variant)
    if (final / "synthtalk.json").is_file():
        return final
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_tmp(final.parent)
        tmp = _make_tmp(final)
    except OSError as exc:
        raise _write_error(final.parent, exc) from None
    try:
        with _Progress(preset, n_clips(get_preset(preset)), final) as report:
            generate(tmp / "dataset", preset, seed, style_coupling, progress=report, variant=variant)
        if final.exists() and not (final / "synthtalk.json").is_file():
            shutil.rmtree(final)  # debris of an interrupted older layout
        try:
            os.rename(tmp / "dataset", final)
        except OSError:
            if not (final / "synthtalk.json").is_file():  # lost a race only if the winner is complete
                raise
    except OSError as exc:
        raise _write_error(final.parent, exc) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _write_error(folder: Path, exc: OSError) -> DataError:
    reason = exc.strerror or str(exc) or type(exc).__name__
    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    return DataError(
        f"cannot write the SynthTalk cache in {folder}: {reason}{where}; free some space or point "
        "TALKBENCH_HOME at a writable folder"
    )


# -- temporary folders of generations in progress ------------------------------------------------
OWNER_FILE = ".owner.json"
STALE_AFTER_S = 3600.0  # a live generation writes a clip every second or so; an hour idle is dead


def _make_tmp(final: Path) -> Path:
    """``.tmp-<key>-<pid>-<n>`` with the owner recorded inside. os.mkdir honours the umask, as does
    the generator for ``dataset`` in it (mkdtemp would make the cache 0700, unreadable to the rest of a
    group sharing TALKBENCH_HOME)."""
    for n in range(1000):
        tmp = final.with_name(f".tmp-{final.name}-{os.getpid()}-{n}")
        try:
            os.mkdir(tmp)
        except FileExistsError:
            continue
        (tmp / OWNER_FILE).write_text(json.dumps({"host": _host(), "pid": os.getpid()}))
        return tmp
    raise FileExistsError(f"no free temporary folder name next to {final}")


def _host() -> str:
    return os.uname().nodename


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _idle_seconds(folder: Path) -> float:
    """Seconds since anything was last added under ``folder`` (the newest mtime of its folders)."""
    newest = max(os.stat(d).st_mtime for d, _, _ in os.walk(folder))
    return max(0.0, time.time() - newest)


def is_stale(tmp: Path) -> bool:
    """A generation's folder whose process is gone: dead pid on this host, or idle for an hour
    (another host sharing the cache, a pid reused since, or a folder older than owner files)."""
    try:
        owner = json.loads((tmp / OWNER_FILE).read_text())
        if owner.get("host") == _host() and not _pid_alive(int(owner["pid"])):
            return True
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        return _idle_seconds(tmp) > STALE_AFTER_S
    except (OSError, ValueError):  # removed meanwhile
        return False


def remove_stale_tmp(root: Path) -> list[Path]:
    """Delete the ``.tmp-*`` folders of dead generations under ``root``; live ones are left alone."""
    removed = []
    for tmp in sorted(root.glob(".tmp-*")):
        if tmp.is_dir() and is_stale(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


class _Progress(TerminalBar):
    """First-use generation progress on stderr: a rich bar on a terminal, else a log line per 10%."""

    def __init__(self, preset: str, total: int, final: Path):
        log.info("SynthTalk '%s': generating %d clips into %s (first use; cached afterwards)",
                 preset, total, final)  # fmt: skip
        super().__init__(True, lambda rp: (
            rp.TextColumn(f"SynthTalk {preset}"), rp.BarColumn(), rp.MofNCompleteColumn(),
            rp.TextColumn("clips"), rp.TimeRemainingColumn(),
        ))  # fmt: skip
        self.total, self.logged = total, 0
        if self.bar is not None:
            self.task = self.bar.add_task("generate", total=total)

    def __call__(self, done: int, total: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done)
        elif done * 10 // total > self.logged:  # every tenth of the clips
            self.logged = done * 10 // total
            log.info("SynthTalk: %d/%d clips generated", done, total)
