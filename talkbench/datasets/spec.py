"""DatasetSpec: everything about a dataset that methods, metrics and renderers need to know."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np

from talkbench.contract import mixture_name
from talkbench.datasets.rig import Rig


@dataclass(frozen=True)
class Split:
    """Subjects of one split and the inclusive sentence range they use (None: all sentences).

    ``by_group`` holds ``(group, lo, hi)`` ranges that replace ``sentences`` for the clips of a group
    (the ``group`` field of DatasetSpec.clip_pattern): 3DMEAD splits neutral and emotional takes at
    different sentence numbers.
    """

    subjects: tuple[str, ...]
    sentences: tuple[int, int] | None = None
    by_group: tuple[tuple[str, int, int], ...] = ()

    def contains(self, subject: str, sentence: int, group: str | None = None) -> bool:
        if subject not in self.subjects:
            return False
        rng = next(((lo, hi) for g, lo, hi in self.by_group if g == group), self.sentences)
        if rng is None:
            return True
        lo, hi = rng
        return lo <= sentence <= hi


@dataclass
class DatasetSpec:
    """Static description of a dataset (not its clips).

    ``fps`` is the motion rate after downsampling (capture_fps / stride); ``audio_alignment`` says how
    audio features map to motion frames: ``"interpolate"`` (VOCASET: resample 50 Hz features to fps) or
    ``"pairs"`` (BIWI: 2 audio frames of 50 Hz per 25 fps motion frame).
    """

    name: str
    fps: float
    n_vertices: int
    splits: dict[str, Split]
    train_subjects: tuple[str, ...]
    regions: dict[str, np.ndarray] = field(default_factory=dict)
    faces: np.ndarray | None = None
    capture_fps: float | None = None
    audio_alignment: str = "interpolate"
    period: int = 30
    unit: str = "m"
    # display scale per metric for tables, e.g. {"lve": 1e-5, "fdd": 1e-7}
    table_scales: dict[str, float] = field(default_factory=dict)
    # upper/lower lip vertex pair(s) for the mouth-opening curve
    mouth_pair: tuple[np.ndarray, np.ndarray] | None = None
    digest: str = ""
    meta: dict = field(default_factory=dict)
    # motion frames of an utterance at prediction time (see ``frames_for_samples``):
    # "features" = the official code's rule from the 50 Hz speech features (VOCASET, BIWI);
    # "samples" = the SynthTalk generator's rule from the sample count, which its ground truth follows
    frame_rule: str = "features"
    # lip vertex ids of the released training lip loss, in file order with duplicates (VOCASET's file
    # has 254 entries, 250 unique); None = regions["lips"]. Metrics always use the unique regions.
    lip_loss_indices: np.ndarray | None = None
    # the split a run predicts and scores by default (``eval.split`` overrides): the published test
    # split, e.g. BIWI's Test-A, on which the papers report LVE/FDD
    eval_split: str = "test"
    # how clip names split into subject, sentence (and group): a regular expression with those named
    # groups, or None for the rule of VOCASET and BIWI (see prepared.parse_name)
    clip_pattern: str | None = None
    # the motion it carries (datasets/targets.py): "vertices", or "blendshapes": named weights (T, K)
    # beside the meshes, ``channels`` their names (ARKit's where they map), ``channel_groups`` the
    # channel index sets weight-space metrics average over, ``rig`` weights -> meshes when known
    target: str = "vertices"
    channels: tuple[str, ...] = ()
    channel_groups: dict[str, np.ndarray] = field(default_factory=dict)
    rig: Rig | None = None

    @property
    def stride(self) -> int:
        if self.capture_fps is None:
            return 1
        return int(round(self.capture_fps / self.fps))

    def frames_for_samples(self, n_samples: int) -> int:
        """Motion frames for ``n_samples`` of 16 kHz audio under ``frame_rule``.

        ``features``: the released code counts the wav2vec2 CNN's 50 Hz frames S' = (S - 400) // 320 + 1
        and takes int(S' / 50 * fps) (``interpolate``) or S' // 2 (``pairs``, two per frame).
        ``samples``: round(S * capture_fps / 16000) captured frames, kept every ``stride``-th from the
        first, i.e. ceil(n / stride) (the SynthTalk generator, loaded like VOCASET with [::stride]).
        """
        if self.frame_rule == "samples":
            rate = self.capture_fps if self.capture_fps is not None else self.fps
            return max(1, math.ceil(int(round(n_samples * rate / 16000)) / self.stride))
        if self.frame_rule != "features":
            raise ValueError(
                f"DatasetSpec.frame_rule must be 'features' or 'samples', got {self.frame_rule!r}"
            )
        s_feat = max(0, (int(n_samples) - 400) // 320 + 1)
        if self.audio_alignment == "pairs":
            return s_feat // 2
        return int(s_feat / 50 * self.fps)

    def speaker_index(self, subject: str) -> int:
        """Index of a training speaker in the one-hot order, or -1 for a speaker not seen in training."""
        try:
            return self.train_subjects.index(subject)
        except ValueError:
            return -1

    def region_digest(self) -> str:
        """Hash of every region index set, so results say exactly which vertices they used."""
        h = hashlib.sha256()
        for key in sorted(self.regions):
            h.update(key.encode())
            h.update(np.ascontiguousarray(self.regions[key], dtype=np.int64).tobytes())
        return h.hexdigest()[:16]


# what every member must share so one audio encoder serves them all (the motion clock)
CLOCK = ("fps", "capture_fps", "audio_alignment", "frame_rule", "period")


@dataclass
class MixtureSpec:
    """A mixture of datasets a run trains on (``--dataset a,b``): each member keeps its own spec.

    ``members`` maps a member's dataset name to its :class:`DatasetSpec` (its topology, regions,
    target, training speakers), in the order the run lists them; ``weights`` the relative rate its
    batches are drawn at. A method with heads (FaceFormer; UniTalker later) builds one head per member
    from ``members`` and reads the member of a batch from ``Batch.dataset``; training speakers are
    ``member:subject`` (:attr:`train_subjects`), each member's at :meth:`speaker_offset`.
    """

    members: dict[str, DatasetSpec]
    weights: dict[str, float]

    @property
    def name(self) -> str:
        return mixture_name(self.members)

    @property
    def train_subjects(self) -> tuple[str, ...]:
        return tuple(f"{m}:{s}" for m, spec in self.members.items() for s in spec.train_subjects)

    def speaker_offset(self, member: str) -> int:
        """Index of ``member``'s first training speaker in :attr:`train_subjects`."""
        offset = 0
        for name, spec in self.members.items():
            if name == member:
                return offset
            offset += len(spec.train_subjects)
        raise KeyError(f"'{member}' is not a member of the mixture {self.name}")

    def speaker_index(self, subject: str) -> int:
        """Index of ``member:subject`` in :attr:`train_subjects`, -1 when it is no training speaker."""
        try:
            return self.train_subjects.index(subject)
        except ValueError:
            return -1

    def clock(self, attr: str):
        """A motion-clock attribute (:data:`CLOCK`) that every member shares; ValueError naming them
        where they differ (one audio encoder cannot align to two frame rates)."""
        values = {name: getattr(spec, attr) for name, spec in self.members.items()}
        if len(set(values.values())) > 1:
            found = ", ".join(f"{k}: {v}" for k, v in values.items())
            raise ValueError(f"the members of the mixture {self.name} differ in {attr} ({found})")
        return next(iter(values.values()))

    @property
    def fps(self) -> float:
        return self.clock("fps")

    @property
    def splits(self) -> dict[str, tuple[str, ...]]:
        """Split name -> the members that have it."""
        out: dict[str, tuple[str, ...]] = {}
        for name, spec in self.members.items():
            for split in spec.splits:
                out[split] = (*out.get(split, ()), name)
        return out
