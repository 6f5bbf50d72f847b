"""Generic loader of the prepared layout shared by VOCASET, BIWI and SynthTalk.

```
<root>/wav/<subject>_<seq>.wav            any rate (resampled to 16 kHz on read)
<root>/vertices_npy/<subject>_<seq>.npy   (T_capture, V*3) float, at the capture fps
<root>/templates.pkl                      {subject: (V, 3)}
```
Clips are indexed from file headers only (npy shape, wav frame count); vertices are memory-mapped
and taken with ``[::stride]``; decoded 16 kHz audio is kept in a small per-dataset LRU cache.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from talkbench.audio.signal import audio_info, read_audio_raw, resample
from talkbench.datasets.clip import SAMPLE_RATE, Clip
from talkbench.datasets.fraction import check_fraction, subset_indices
from talkbench.datasets.spec import DatasetSpec
from talkbench.errors import ConfigError, DataError

log = logging.getLogger("talkbench.datasets")

WAV_DIR = "wav"
VERTS_DIR = "vertices_npy"
WEIGHTS_DIR = "blendshapes_npy"  # blendshape datasets: (T_capture, K) weights, same frames as the meshes
TEMPLATES = "templates.pkl"


@dataclass(frozen=True)
class ClipRef:
    """What is known about a clip without loading it. ``n_frames`` is the aligned length at spec.fps."""

    name: str
    subject: str
    sentence: int
    n_frames: int
    wav: Path
    npy: Path
    group: str | None = None  # the clip_pattern's group (3DMEAD: the emotion), None without one
    weights: Path | None = None  # blendshapes_npy/<name>.npy of a blendshape dataset


# ----------------------------------------------------------------------------------- names and files
def parse_name(stem: str, path: Path | str | None = None) -> tuple[str, int]:
    """``FaceTalk_170725_00137_TA_sentence01`` -> (``FaceTalk_170725_00137_TA``, 1); ``F2_e01`` -> (F2, 1)."""
    subject, sep, _last = stem.rpartition("_")
    if not sep or not subject or not stem[-2:].isdigit():
        raise DataError(
            f"{path or stem}: cannot parse the clip name '{stem}'; expected <subject>_<sequence> whose last "
            "two characters are the sentence number (e.g. FaceTalk_170725_00137_TA_sentence01, F2_e01)"
        )
    return subject, int(stem[-2:])


def parse_clip(stem: str, path: Path | str | None, pattern: str | None) -> tuple[str, int, str | None]:
    """(subject, sentence, group) of a clip name: ``pattern``'s named groups ``subject``, ``sentence``
    and optionally ``group`` (e.g. 3DMEAD's ``M003_001_0_0``), or :func:`parse_name` without one."""
    if pattern is None:
        return (*parse_name(stem, path), None)
    m = re.fullmatch(pattern, stem)
    if m is None:
        raise DataError(
            f"{path or stem}: cannot parse the clip name '{stem}'; expected names matching {pattern}"
        )
    found = m.groupdict()
    return found["subject"], int(found["sentence"]), found.get("group")


def require_layout(root: str | Path, dataset: str) -> Path:
    """The root has wav/, vertices_npy/ and templates.pkl, else one error listing what is missing."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: no such directory; expected a prepared {dataset} dataset root")
    missing = [p for p in (WAV_DIR, VERTS_DIR) if not (root / p).is_dir()]
    missing += [TEMPLATES] if not (root / TEMPLATES).is_file() else []
    if missing:
        raise DataError(
            f"{root}: not a prepared {dataset} dataset: missing {', '.join(missing)} (expected wav/, "
            "vertices_npy/ and templates.pkl; convert a VOCASET release with `bench data prepare vocaset`)"
        )
    return root


def find_pairs(root: Path) -> tuple[dict[str, tuple[Path, Path]], list[Path], list[Path]]:
    """Clips with both files by stem, plus WAVs without a vertex file and vertex files without a WAV."""
    wavs = {p.stem: p for p in (root / WAV_DIR).glob("*.wav")}
    npys = {p.stem: p for p in (root / VERTS_DIR).glob("*.npy")}
    pairs = {s: (wavs[s], npys[s]) for s in sorted(wavs.keys() & npys.keys())}
    return (
        pairs,
        sorted(wavs[s] for s in wavs.keys() - npys.keys()),
        sorted(npys[s] for s in npys.keys() - wavs.keys()),
    )


def file_size(path: Path) -> int:
    """Size in bytes; a DataError naming the file when it cannot be read (a dangling symbolic link,
    a file removed meanwhile, no permission), instead of an OSError traceback from the digest."""
    try:
        return path.stat().st_size
    except OSError as exc:
        if path.is_symlink():
            raise DataError(
                f"{path}: broken symbolic link (its target {path.readlink()} does not exist); "
                "fix or remove the link"
            ) from None
        raise DataError(f"{path}: cannot read the file ({exc.strerror or exc})") from None


# ------------------------------------------------------------------------------------ length alignment
def motion_frames(capture_frames: int, stride: int) -> int:
    """Frames left after ``[::stride]``."""
    return -(-capture_frames // stride)


def aligned_frames(n_motion: int, audio_seconds: float, fps: float) -> int:
    """T = min(T_motion, floor(audio_seconds * fps)): never a motion frame without its audio."""
    return int(min(n_motion, math.floor(audio_seconds * fps + 1e-9)))


def audio_samples(n_frames: int, fps: float) -> int:
    return int(round(n_frames / fps * SAMPLE_RATE))


def audio_too_short(n_motion: int, audio_seconds: float, fps: float) -> bool:
    """Audio shorter than the motion by more than max(0.5 s, 10 %) means mismatched files, not jitter."""
    motion_s = n_motion / fps
    return audio_seconds < motion_s - max(0.5, 0.1 * motion_s)


def probe_clip(
    stem: str, wav: Path, npy: Path, templates: dict[str, np.ndarray], spec: DatasetSpec
) -> tuple[ClipRef | None, list[str]]:
    """Header-level checks of one clip; returns the ref (None if unusable) and every problem found."""
    problems: list[str] = []
    try:
        subject, sentence, group = parse_clip(stem, npy, spec.clip_pattern)
    except DataError as exc:
        return None, [str(exc)]
    if subject not in templates:
        problems.append(
            f"{npy}: no template for subject '{subject}' in {npy.parent.parent / TEMPLATES} "
            f"(it has: {', '.join(sorted(templates)[:8])}{' ...' if len(templates) > 8 else ''})"
        )
    n_motion = None
    try:
        arr = np.load(npy, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        problems.append(f"{npy}: unreadable vertex file ({exc}); expected a float (T, V*3) .npy")
    else:
        v = spec.n_vertices
        if not np.issubdtype(arr.dtype, np.floating):
            problems.append(f"{npy}: vertex dtype {arr.dtype}; expected float32")
        elif arr.ndim == 2 and arr.shape[1] == 3 * v or arr.ndim == 3 and arr.shape[1:] == (v, 3):
            if arr.shape[0] == 0:
                problems.append(f"{npy}: no frames")
            else:
                n_motion = motion_frames(arr.shape[0], spec.stride)
        else:
            per_frame = arr.shape[1] / 3 if arr.ndim == 2 else arr.shape[1:]
            problems.append(
                f"{npy}: shape {arr.shape} ({per_frame} vertices per frame) does not match the template's "
                f"{v} vertices; expected (T, {3 * v})"
            )
    try:
        frames, rate = audio_info(wav)
    except DataError as exc:
        problems.append(str(exc))
        return None, problems
    weights = None
    if spec.target == "blendshapes" and n_motion is not None:
        weights = npy.parent.parent / WEIGHTS_DIR / npy.name
        problems += _weight_problems(weights, arr.shape[0], len(spec.channels))
    if n_motion is None or problems:
        return None, problems
    seconds = frames / rate
    if audio_too_short(n_motion, seconds, spec.fps):
        problems.append(
            f"{wav}: audio lasts {seconds:.2f} s but its motion {npy.name} lasts "
            f"{n_motion / spec.fps:.2f} s; expected audio at most max(0.5 s, 10%) shorter than the motion"
        )
        return None, problems
    n = aligned_frames(n_motion, seconds, spec.fps)
    if n <= 0:
        return None, [f"{wav}: too short for one motion frame ({seconds:.3f} s)"]
    return ClipRef(stem, subject, sentence, n, wav, npy, group, weights), []


def _weight_problems(path: Path, n_capture: int, n_channels: int) -> list[str]:
    """The blendshape file of a clip: present, float (T, K) with the meshes' frame count."""
    if not path.is_file():
        return [f"{path}: missing blendshape weights; expected float32 ({n_capture}, {n_channels})"]
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        return [f"{path}: unreadable blendshape file ({exc}); expected a float (T, K) .npy"]
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.floating) or arr.shape != (n_capture, n_channels):
        return [
            f"{path}: {arr.dtype} weights of shape {arr.shape}; expected float32 ({n_capture}, "
            f"{n_channels}): one row per frame of its vertex file, one column per channel"
        ]
    return []


def finite_problem(npy: Path, vertices: np.ndarray, fps: float) -> str | None:
    """The first non-finite frame, as a message, or None."""
    if np.isfinite(vertices).all():
        return None
    bad = ~np.isfinite(vertices.reshape(vertices.shape[0], -1)).all(axis=1)
    if not bad.any():
        return None
    first = int(np.argmax(bad))
    return (
        f"{npy}: vertices contain NaN or inf ({int(bad.sum())} frames, first at frame {first} at {fps:g} fps)"
    )


# ------------------------------------------------------------------------------------------ the dataset
class _AudioCache:
    """LRU of decoded, aligned 16 kHz audio with a byte budget (audio is small next to vertices)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0

    def get(self, key: str) -> np.ndarray | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: str, value: np.ndarray) -> None:
        self._items[key] = value
        self._bytes += value.nbytes
        while self._bytes > self.max_bytes and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self._bytes -= old.nbytes


class PreparedDataset:
    """A dataset in the prepared layout: ``spec``, ``split(name)`` views of lazily loaded clips."""

    def __init__(
        self,
        root: str | Path,
        spec: DatasetSpec,
        templates: dict[str, np.ndarray],
        audio_cache_mb: int = 512,
    ):
        self.root = Path(root)
        self.spec = spec
        self.templates = templates
        self._pairs, self.wav_only, self.npy_only = find_pairs(self.root)
        if not self._pairs:
            raise DataError(
                f"{self.root}: no clips (no wav/<name>.wav with a matching vertices_npy/<name>.npy)"
            )
        if self.wav_only:
            # the reference loaders drop pairs without a vertex file; say so once
            log.info("%s: %d WAV files without a vertex file are ignored", self.root, len(self.wav_only))
        self._names = {
            stem: parse_clip(stem, paths[1], spec.clip_pattern) for stem, paths in self._pairs.items()
        }
        self._views: dict[str, SplitView] = {}
        self._train_fraction = (1.0, 0)  # (share of the training clips, subset seed): use_train_fraction
        self._audio = _AudioCache(audio_cache_mb << 20)
        self._mmaps: dict[str, np.ndarray] = {}
        self._checked: set[str] = set()
        self._resample_noted = False
        spec.digest = self._digest()

    # pickling (DataLoader workers under spawn) must not copy memory maps or the audio cache
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_mmaps"] = {}
        state["_audio"] = _AudioCache(self._audio.max_bytes)
        return state

    @property
    def name(self) -> str:
        return self.spec.name

    def __repr__(self) -> str:
        return f"PreparedDataset({self.spec.name!r}, root={str(self.root)!r}, clips={len(self._pairs)})"

    def split_stems(self, split: str) -> list[str]:
        s = self.spec.splits[split]
        return [stem for stem, name in self._names.items() if s.contains(*name)]

    def _digest(self) -> str:
        """Split file lists, file sizes (catch partial downloads), templates, regions, and the
        generator metadata when there is one (SynthTalk: version, parameters, source hash)."""
        h = hashlib.sha256(self.spec.name.encode())
        for split in sorted(self.spec.splits):
            h.update(f"\n[{split}]".encode())
            for stem in sorted(self.split_stems(split)):
                files = self._pairs[stem]
                weights = self.root / WEIGHTS_DIR / files[1].name
                if self.spec.target == "blendshapes" and weights.exists():  # missing: named by probe_clip
                    files = (*files, weights)
                sizes = [file_size(p) for p in files]
                h.update(f"{stem}:{sizes}\n".encode())
        h.update((self.root / TEMPLATES).read_bytes())
        for extra in ("synthtalk.json", "rig.npz"):
            if (self.root / extra).is_file():
                h.update((self.root / extra).read_bytes())
        h.update(self.spec.region_digest().encode())
        return h.hexdigest()[:16]

    def split(self, name: str) -> SplitView:
        """Clips of one split (headers probed once; a bad clip raises, naming its file)."""
        if name not in self.spec.splits:
            raise ConfigError(
                f"unknown split '{name}' of dataset {self.spec.name}; "
                f"available: {', '.join(self.spec.splits)}"
            )
        if name not in self._views:
            refs, problems = [], []
            for stem in self.split_stems(name):
                ref, found = probe_clip(stem, *self._pairs[stem], self.templates, self.spec)
                problems += found
                if ref is not None:
                    refs.append(ref)
            if problems:
                more = f" (and {len(problems) - 1} more; `bench data check {self.root}` lists all)"
                raise DataError(problems[0] + (more if len(problems) > 1 else ""))
            view = SplitView(self, name, tuple(refs))
            if name == "train":
                view = view.subset(subset_indices(view.refs, *self._train_fraction))
            self._views[name] = view
        return self._views[name]

    def use_train_fraction(self, fraction: float, seed: int = 0) -> None:
        """Train on a seeded, speaker-stratified share of the training split (datasets/fraction.py);
        the other splits are untouched."""
        self._train_fraction = (check_fraction(fraction), int(seed))
        self._views.pop("train", None)

    # ---- clip loading
    def vertices(self, ref: ClipRef) -> np.ndarray:
        """(T, V, 3) memory-mapped view at spec.fps (float32), checked for NaN/inf on first access."""
        arr = self._mmaps.get(ref.name)
        if arr is None:
            arr = np.load(ref.npy, mmap_mode="r", allow_pickle=False)
            self._mmaps[ref.name] = arr
        verts = arr.reshape(arr.shape[0], self.spec.n_vertices, 3)[:: self.spec.stride][: ref.n_frames]
        if verts.dtype != np.float32:
            verts = verts.astype(np.float32)
        if ref.name not in self._checked:
            problem = finite_problem(ref.npy, verts, self.spec.fps)
            if problem:
                raise DataError(problem)
            self._checked.add(ref.name)
        return verts

    def weights(self, ref: ClipRef) -> np.ndarray | None:
        """(T, K) memory-mapped blendshape weights at spec.fps, or None for a vertex dataset."""
        if ref.weights is None:
            return None
        key = f"{ref.name}/weights"
        arr = self._mmaps.get(key)
        if arr is None:
            arr = np.load(ref.weights, mmap_mode="r", allow_pickle=False)
            self._mmaps[key] = arr
        w = arr[:: self.spec.stride][: ref.n_frames]
        if w.dtype != np.float32:
            w = w.astype(np.float32)
        if key not in self._checked:
            problem = finite_problem(ref.weights, w[:, :, None], self.spec.fps)
            if problem:
                raise DataError(problem.replace("vertices contain", "weights contain"))
            self._checked.add(key)
        return w

    def audio(self, ref: ClipRef) -> np.ndarray:
        """Float32 16 kHz audio trimmed/zero-padded to round(T / fps * 16000) samples (read-only)."""
        cached = self._audio.get(ref.name)
        if cached is not None:
            return cached
        raw, rate = read_audio_raw(ref.wav)
        if rate != SAMPLE_RATE:
            if not self._resample_noted:
                log.warning(
                    "%s: audio at %d Hz is resampled to %d Hz on load (noted once per dataset)",
                    ref.wav,
                    rate,
                    SAMPLE_RATE,
                )
                self._resample_noted = True
            raw = resample(raw, rate)
        n = audio_samples(ref.n_frames, self.spec.fps)
        out = np.zeros(n, np.float32)
        m = min(n, len(raw))
        out[:m] = raw[:m]
        out.flags.writeable = False
        self._audio.put(ref.name, out)
        return out

    def clip(self, ref: ClipRef) -> Clip:
        return Clip(
            name=ref.name,
            subject=ref.subject,
            sentence=ref.sentence,
            fps=self.spec.fps,
            audio=self.audio(ref),
            vertices=self.vertices(ref),
            template=self.templates[ref.subject],
            weights=self.weights(ref),
        )


class SplitView(Sequence[Clip]):
    """A lazy sequence of the clips of one split; ``refs`` describe them without loading anything."""

    def __init__(self, dataset: PreparedDataset, name: str, refs: tuple[ClipRef, ...]):
        self.dataset = dataset
        self.name = name
        self.refs = refs

    @property
    def spec(self) -> DatasetSpec:
        return self.dataset.spec

    @property
    def lengths(self) -> np.ndarray:
        return np.array([r.n_frames for r in self.refs], dtype=np.int64)

    @property
    def subjects(self) -> list[str]:
        return sorted({r.subject for r in self.refs})

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index):  # int -> Clip, slice -> SplitView
        if isinstance(index, slice):
            return SplitView(self.dataset, self.name, self.refs[index])
        return self.dataset.clip(self.refs[index])

    def __iter__(self) -> Iterator[Clip]:
        for ref in self.refs:
            yield self.dataset.clip(ref)

    def subset(self, indices: Sequence[int]) -> SplitView:
        return SplitView(self.dataset, self.name, tuple(self.refs[i] for i in indices))

    def by_name(self, name: str) -> Clip:
        for ref in self.refs:
            if ref.name == name:
                return self.dataset.clip(ref)
        raise DataError(f"no clip '{name}' in split '{self.name}' of {self.dataset.root}")

    def __repr__(self) -> str:
        return f"SplitView({self.spec.name}:{self.name}, clips={len(self)}, subjects={len(self.subjects)})"
