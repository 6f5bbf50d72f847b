"""DistributedDataParallel plumbing for runs under ``torchrun``: init from env, sharding, reductions."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialised_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(use_cuda: bool) -> DistInfo:
    """Join the process group that ``torchrun`` describes in RANK/WORLD_SIZE (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world <= 1 and not dist.is_initialized():
        return DistInfo()
    here = False
    if not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
        here = True
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, here)


def teardown(info: DistInfo) -> None:
    if info.initialised_here and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj``, in rank order (only [obj] when not distributed)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


class ShardedLoader:
    """Batch ``i`` of the wrapped loader goes to rank ``i % world_size``.

    The wrapped order is a pure function of (seed, epoch), identical on every rank, so the shards are
    disjoint. ``drop_last`` keeps the same number of batches on every rank (DDP needs matching
    backward passes); validation uses ``drop_last=False`` and reduces sums across ranks.
    """

    def __init__(self, loader, info: DistInfo, drop_last: bool = True):
        self.loader = loader
        self.info = info
        self.drop_last = drop_last

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.loader, "set_epoch"):
            self.loader.set_epoch(epoch)

    def __len__(self) -> int:
        n = len(self.loader)
        w, r = self.info.world_size, self.info.rank
        if self.drop_last:
            return n // w
        return (n - r + w - 1) // w

    def __iter__(self):
        w, r = self.info.world_size, self.info.rank
        limit = len(self) * w if self.drop_last else None
        for i, batch in enumerate(self.loader):
            if limit is not None and i >= limit:
                break
            if i % w == r:
                yield batch


# -- one MLflow run per torchrun job ------------------------------------------------------------
class RunAnnouncer:
    """Rank 0 tells every other rank the id of the MLflow run it created (or that it failed).

    Followers block in :func:`receive_run_id` until rank 0 calls :meth:`share`; when rank 0 fails
    before that (bad store, bad data), leaving the ``with`` block broadcasts the error instead, so the
    followers stop with it rather than waiting for the process group's timeout.
    """

    def __init__(self, info: DistInfo):
        self.info = info
        self.sent = False

    def share(self, run_id: str) -> None:
        if self.info.enabled and not self.sent:
            dist.broadcast_object_list([("ok", run_id)], src=0)
        self.sent = True

    def __enter__(self) -> RunAnnouncer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.info.enabled and not self.sent:
            message = f"{type(exc).__name__}: {exc}" if exc is not None else "rank 0 created no run"
            self.sent = True
            dist.broadcast_object_list([("error", message.splitlines()[0] if message else "")], src=0)


def receive_run_id(info: DistInfo) -> str:
    """The run id that rank 0 shares (see :class:`RunAnnouncer`); an error when rank 0 failed."""
    from talkbench.errors import TalkbenchError

    box: list[Any] = [None]
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind != "ok":
        raise TalkbenchError(f"rank {info.rank}: rank 0 failed before creating the run ({value})")
    return value


def replica_digest(module: torch.nn.Module, info: DistInfo) -> str:
    """sha256 of ``module``'s weights, checked equal on every rank (DDP replicas must not drift)."""
    import hashlib

    from talkbench.errors import TalkbenchError

    h = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    digests = gather_objects(h.hexdigest(), info)
    if len(set(digests)) > 1:
        raise TalkbenchError(f"the {info.world_size} ranks ended training with different weights: {digests}")
    return digests[0]
