"""Training checkpoints: atomic writes, RNG state capture/restore, and loads with one clear error."""

from __future__ import annotations

import os
import random
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from talkbench.errors import TalkbenchError

FORMAT = "talkbench-checkpoint"
VERSION = 1
LAST = "last.pt"
REQUIRED_KEYS = ("format", "version", "method", "stage_index", "epoch", "global_epoch", "model", "rng")


def atomic_save(payload: dict[str, Any], path: Path) -> Path:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``.

    A reader (or a resume after SIGKILL) sees either the old file or the complete new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)
    return path


def remove_partial_writes(ckpt_dir: Path) -> list[Path]:
    """Delete temporary files of writes that never completed (the process died before the rename)."""
    ckpt_dir = Path(ckpt_dir)
    stale = sorted(ckpt_dir.glob(".*.tmp-*")) if ckpt_dir.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def atomic_link(src: Path, dst: Path) -> Path:
    """Make ``dst`` an atomic alias of ``src`` (hard link, else copy) without rewriting the payload."""
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    if tmp.exists():
        tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    _fsync_dir(dst.parent)
    return dst


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and sanity-check a checkpoint; anything wrong is one TalkbenchError naming the file."""
    path = Path(path)
    hint = "delete it (and resume from an older checkpoint) or start the run without --resume"
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; its index sits at the end
        raise TalkbenchError(
            f"checkpoint {path} is corrupt or unreadable (not a complete torch archive: truncated or "
            f"overwritten); {hint}"
        )
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # damaged members, objects refused by the weights-only unpickler, ...
        text = " ".join(str(exc).split())
        if text.startswith("Weights only load failed"):
            reason = "it holds objects other than tensors and plain values"
        else:
            reason = text.split(". ")[0] or type(exc).__name__
        raise TalkbenchError(f"checkpoint {path} is corrupt or unreadable ({reason}); {hint}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise TalkbenchError(f"checkpoint {path} is not a talkbench training checkpoint; {hint}")
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise TalkbenchError(f"checkpoint {path} is incomplete (missing {', '.join(missing)}); {hint}")
    if payload["version"] != VERSION:
        raise TalkbenchError(
            f"checkpoint {path} has format version {payload['version']}, this talkbench reads {VERSION}"
        )
    return payload


def last_checkpoint(ckpt_dir: Path) -> Path | None:
    path = Path(ckpt_dir) / LAST
    return path if path.exists() else None


# -- RNG state ----------------------------------------------------------------------------------
def capture_rng() -> dict[str, Any]:
    """Python, NumPy and torch (CPU + CUDA) generator states, as tensors/primitives (weights_only safe)."""
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
