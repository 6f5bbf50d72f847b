"""Features of a frozen encoder prefix per clip, computed once per clip per encoder, not per run.

Key: the prefix's weights digest (every tensor's name, dtype, shape and bytes: a different checkpoint,
an optimizer step or a load_state_dict gives another) and the clip's digest (its normalised valid
samples, so an augmentation that changes the audio misses). Two layers: a bounded dict for this
process (epochs after the first) and one safetensors file per entry under ``TALKBENCH_HOME/features``
for every process (other seeds, methods and runs with the same frozen encoder). A file is trusted only
if its recorded encoder, clip and content checksum match the key; otherwise it is refused, recomputed
and replaced. Writes are atomic (temporary file, then rename), so concurrent runs can share the folder;
deleting it is always safe.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from talkbench.paths import feature_cache

log = logging.getLogger("talkbench.audio")
FORMAT = "1"  # of the files' metadata


def clip_digest(samples: torch.Tensor) -> str:
    data = samples.detach().to("cpu", torch.float32).contiguous().numpy()
    return hashlib.blake2b(data.tobytes(), digest_size=16).hexdigest() + f"-{data.shape[0]}"


def tensors_digest(named, salt: str = "") -> str:
    """Digest of (name, tensor) pairs: names, dtypes, shapes and bytes, in order."""
    h = hashlib.sha256(salt.encode())
    for name, tensor in named:
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:32]


def weights_digest(module: nn.Module) -> str:
    """Digest of a module's parameters and buffers (names, dtypes, shapes, values)."""
    return tensors_digest(module.state_dict().items(), type(module).__qualname__)


def _content_digest(feats: torch.Tensor) -> str:
    return hashlib.sha256(feats.contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()


class FrozenFeatureCache:
    """``get(samples, encoder, compute)``: the features of ``samples`` under the frozen prefix whose
    weights digest is ``encoder``, from memory, from disk, or from ``compute(samples)`` (then stored).

    Counters: ``misses`` (computed), ``hits`` (memory), ``disk_hits``, ``refused`` (stale files)."""

    def __init__(self, directory: Path | None = None, max_bytes: int = 2 << 30, disk: bool = True):
        self.directory = directory
        self.max_bytes = max_bytes
        self.disk = disk
        self.hits = self.disk_hits = self.misses = self.refused = 0
        self._items: dict[tuple[str, str], torch.Tensor] = {}
        self._bytes = 0

    def __getstate__(self):  # a copied encoder carries no cached features
        return {"directory": self.directory, "max_bytes": self.max_bytes, "disk": self.disk}

    def __setstate__(self, state):
        self.__init__(**state)

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0

    def path(self, encoder: str, clip: str) -> Path:
        return (self.directory or feature_cache()) / encoder / f"{clip}.safetensors"

    def get(self, samples: torch.Tensor, encoder: str, compute: Callable[[torch.Tensor], torch.Tensor]):
        clip = clip_digest(samples)
        key = (encoder, clip)
        found = self._items.get(key)
        if found is not None:
            self.hits += 1
            return found.to(samples.device)
        found = self._read(encoder, clip) if self.disk else None
        if found is not None:
            self.disk_hits += 1
        else:
            self.misses += 1
            found = compute(samples).detach()
            if self.disk:
                self._write(encoder, clip, found)
        self._remember(key, found)
        return found.to(samples.device)

    def _remember(self, key: tuple[str, str], feats: torch.Tensor) -> None:
        size = feats.numel() * feats.element_size()
        if self._bytes + size <= self.max_bytes:
            self._items[key] = feats
            self._bytes += size

    def _read(self, encoder: str, clip: str) -> torch.Tensor | None:
        path = self.path(encoder, clip)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                feats = f.get_tensor("features")
        except Exception as exc:  # truncated or foreign file
            return self._refuse(path, f"unreadable ({type(exc).__name__})")
        expected = {"format": FORMAT, "encoder": encoder, "clip": clip}
        if any(meta.get(k) != v for k, v in expected.items()):
            return self._refuse(path, "recorded for another encoder or clip")
        if meta.get("sha256") != _content_digest(feats):
            return self._refuse(path, "content does not match its checksum")
        return feats

    def _refuse(self, path: Path, why: str) -> None:
        self.refused += 1
        log.warning("feature cache: %s is %s; recomputing it", path, why)
        return None

    def _write(self, encoder: str, clip: str, feats: torch.Tensor) -> None:
        path = self.path(encoder, clip)
        cpu = feats.to("cpu").contiguous()
        meta = {"format": FORMAT, "encoder": encoder, "clip": clip, "sha256": _content_digest(cpu)}
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=path.parent)
            os.close(fd)
            save_file({"features": cpu}, tmp, metadata=meta)
            os.replace(tmp, path)
        except OSError as exc:  # a full or read-only disk costs speed, never the run
            log.warning("feature cache: cannot write %s (%s); keeping the features in memory only", path, exc)
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
