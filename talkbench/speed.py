"""One timing function for every method: how big and how fast ``predict`` is on a 10 s clip.

:func:`measure` times ``method.predict`` on the run's device with the run's CPU thread count
(stated with the numbers, since both change them) and returns a :class:`SpeedProfile`:

- parameters, total and trainable (those some training stage updates; a frozen speech CNN is not);
- compute: the median of ``repeats`` timed ``predict`` calls on ``clip_s`` seconds of real speech
  (the first test clip, tiled), after one untimed warm-up call;
- real-time factor (RTF): compute / audio duration (< 1: faster than real time), and the same as
  milliseconds of compute per second of audio;
- first-frame latency: the time of ``predict`` on the shortest prefix that gives a frame (one
  frame's audio, doubled until the method accepts it), i.e. what a caller streaming the audio in
  chunks waits at least; the prefix length is reported with it;
- the speech encoder's share of compute: time spent inside its forward (hooks), over the total.

Times are wall-clock (``perf_counter``) with a CUDA synchronise around each call. The pipeline logs
the profile as ``speed/*`` metrics at the end of a run (scoring.py); reports and ``bench leaderboard
--columns speed`` read them back.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

import numpy as np

from talkbench.errors import TalkbenchError

CLIP_S = 10.0  # the clip length the speed columns are measured on
REPEATS = 3
MAX_CHUNK_S = 2.0  # first-frame search gives up beyond this prefix


@dataclass(frozen=True)
class SpeedProfile:
    clip_s: float  # audio seconds of the timed clip
    n_frames: int  # frames predict returned for it
    compute_s: float  # median wall time of predict on the clip
    first_frame_s: float  # wall time of predict on the shortest prefix that gives a frame
    first_chunk_s: float  # that prefix's length
    encoder_s: float  # of compute_s, the time inside the speech encoder (0 without one)
    params_total: int
    params_trainable: int
    threads: int
    device: str

    @property
    def rtf(self) -> float:
        """Real-time factor: seconds of compute per second of audio (< 1 is faster than real time)."""
        return self.compute_s / self.clip_s

    @property
    def ms_per_audio_s(self) -> float:
        return 1000.0 * self.rtf

    @property
    def encoder_share(self) -> float:
        return self.encoder_s / self.compute_s if self.compute_s > 0 else math.nan

    def metrics(self) -> dict[str, float]:
        """As logged: ``speed/<name>`` (see ``contract.speed_metric``)."""
        from talkbench.contract import speed_metric

        values = {
            "params_total": self.params_total,
            "params_trainable": self.params_trainable,
            "first_frame_ms": 1000.0 * self.first_frame_s,
            "first_chunk_s": self.first_chunk_s,
            "ms_per_audio_s": self.ms_per_audio_s,
            "rtf": self.rtf,
            "encoder_share": self.encoder_share,
            "clip_s": self.clip_s,
            "threads": self.threads,
        }
        return {speed_metric(k): float(v) for k, v in values.items()}


def trainable_count(method) -> int:
    """Parameters that some training stage updates (each counted once)."""
    try:
        stages = method.stages()
    except NotImplementedError:
        stages = []
    names = {name for stage in stages for name, _ in method.named_trainable(stage)}
    return sum(p.numel() for name, p in method.named_parameters() if name in names)


class _EncoderClock:
    """Wall time spent inside a module's forward, from forward hooks (CUDA synchronised)."""

    def __init__(self, module, sync):
        self.seconds, self._t0, self._sync = 0.0, 0.0, sync
        self._handles = [] if module is None else [
            module.register_forward_pre_hook(self._start),
            module.register_forward_hook(self._stop),
        ]

    def _start(self, *_):
        self._sync()
        self._t0 = time.perf_counter()

    def _stop(self, *_):
        self._sync()
        self.seconds += time.perf_counter() - self._t0

    def close(self):
        for h in self._handles:
            h.remove()


def speech_of(audio: np.ndarray, n_samples: int) -> np.ndarray:
    """``n_samples`` of real speech: the clip's audio tiled (or cut) to that length."""
    audio = np.asarray(audio, np.float32)
    if audio.size == 0:
        raise TalkbenchError("speed: the timing clip has no audio")
    return np.resize(audio, n_samples)


def measure(
    method,
    audio: np.ndarray,
    template: np.ndarray,
    fps: float,
    condition: int | None = None,
    clip_s: float = CLIP_S,
    repeats: int = REPEATS,
    sample_rate: int = 16000,
) -> SpeedProfile:
    """Time ``method.predict`` on ``clip_s`` seconds built from ``audio`` (16 kHz) with ``template``."""
    import torch

    from talkbench.audio.provenance import main_encoder

    if clip_s <= 0 or repeats < 1:
        raise TalkbenchError(f"speed: clip_s {clip_s} and repeats {repeats} must be positive")
    device = method.device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    tpl = torch.as_tensor(np.asarray(template, np.float32), device=device)
    n = int(round(clip_s * sample_rate))
    wav = torch.tensor(speech_of(audio, n), device=device)

    def timed(x: torch.Tensor) -> tuple[float, int]:
        sync()
        t0 = time.perf_counter()
        with torch.no_grad():
            out = method.predict(x, tpl, condition)
        sync()
        return time.perf_counter() - t0, int(out.shape[0])

    method.eval()
    timed(wav)  # warm-up: allocator, kernels, lazy caches
    clock = _EncoderClock(main_encoder(method), sync)
    try:
        runs = [timed(wav) for _ in range(repeats)]
        encoder_s = clock.seconds / repeats
    finally:
        clock.close()
    compute_s = statistics.median(t for t, _ in runs)
    first_s, chunk_s = _first_frame(timed, wav, fps, sample_rate)
    counts = method.parameter_counts() if hasattr(method, "parameter_counts") else {}
    return SpeedProfile(
        clip_s=n / sample_rate,
        n_frames=runs[0][1],
        compute_s=compute_s,
        first_frame_s=first_s,
        first_chunk_s=chunk_s,
        encoder_s=encoder_s,
        params_total=int(counts.get("total", sum(p.numel() for p in method.parameters()))),
        params_trainable=trainable_count(method),
        threads=torch.get_num_threads(),
        device=str(device),
    )


def _first_frame(timed, wav, fps: float, sample_rate: int) -> tuple[float, float]:
    """(time, prefix seconds) of predict on the shortest prefix (1, 2, 4, ... frames of audio) that the
    method accepts and that gives at least one frame; NaN where none up to MAX_CHUNK_S does."""
    frames = 1
    while frames / fps <= MAX_CHUNK_S:
        n = int(math.ceil(frames / fps * sample_rate))
        chunk = wav[:n]
        try:
            timed(chunk)  # warm-up at this shape
            t, got = timed(chunk)
        except (TalkbenchError, RuntimeError, ValueError):
            got = 0  # too short for the method's front end
        if got >= 1:
            return t, n / sample_rate
        frames *= 2
    return math.nan, math.nan
