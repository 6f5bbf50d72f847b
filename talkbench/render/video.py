"""H.264 MP4 writing with an AAC audio track (PyAV, whose wheels carry libx264 and AAC)."""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np

from talkbench.errors import TalkbenchError


def write_mp4(
    frames: Iterable[np.ndarray],
    path: str | Path,
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int = 16_000,
    crf: int = 23,
) -> Path:
    """Encode uint8 RGB frames (H, W, 3) to H.264 yuv420p, muxed with mono float audio as AAC.

    Written to a temporary name and renamed, so an interrupted render never leaves a broken file.
    An all-black frame means the renderer failed silently (as pyrender does); it is an error.
    """

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".partial.mp4")
    try:
        n = _encode(frames, tmp, path, fps, audio, sample_rate, crf)
    except BaseException:
        tmp.unlink(missing_ok=True)  # never leave a half-written video behind
        raise
    if n == 0:
        tmp.unlink(missing_ok=True)
        raise TalkbenchError(f"no frames to write to {path}")
    tmp.replace(path)
    return path


def _encode(frames, tmp: Path, path: Path, fps: float, audio, sample_rate: int, crf: int) -> int:
    import av

    n = 0
    with av.open(str(tmp), mode="w") as container:
        video = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        video.pix_fmt = "yuv420p"
        video.options = {"crf": str(crf), "preset": "veryfast"}
        # every stream must exist before the first packet is muxed
        sound = _audio_stream(container, sample_rate) if audio is not None and len(audio) else None
        for frame in frames:
            if n == 0:
                h, w = frame.shape[:2]
                video.width, video.height = w - w % 2, h - h % 2
            if not frame.any():
                raise TalkbenchError(f"frame {n} of {path.name} rendered all black: renderer failure")
            vf = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(frame[: video.height, : video.width]), format="rgb24"
            )
            for packet in video.encode(vf):
                container.mux(packet)
            n += 1
        for packet in video.encode():
            container.mux(packet)
        if sound is not None:
            _mux_audio(container, sound, np.asarray(audio, np.float32), sample_rate)
    return n


def _audio_stream(container, sample_rate: int):
    stream = container.add_stream("aac", rate=sample_rate)
    stream.layout = "mono"
    return stream


def _mux_audio(container, stream, audio: np.ndarray, sample_rate: int) -> None:
    import av

    block = 1024
    for start in range(0, len(audio), block):
        chunk = np.clip(audio[start : start + block], -1, 1)[None, :]
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="mono")
        frame.sample_rate = sample_rate
        frame.pts = start
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def read_mp4(path: str | Path) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Decode an MP4: (frames (T, H, W, 3) uint8, audio (S,) float32, fps, audio sample rate)."""
    import av

    with av.open(str(path)) as container:
        vstream = container.streams.video[0]
        fps = float(vstream.average_rate)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(vstream)]
    audio, rate = np.zeros(0, np.float32), 0
    with av.open(str(path)) as container:
        if container.streams.audio:
            astream = container.streams.audio[0]
            rate = astream.rate
            chunks = [f.to_ndarray().reshape(-1) for f in container.decode(astream)]
            audio = np.concatenate(chunks).astype(np.float32) if chunks else audio
    return np.stack(frames), audio, fps, rate
