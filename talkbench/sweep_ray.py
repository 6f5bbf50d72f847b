"""Ray backend of `bench sweep`: every point a Ray task that runs `bench run` on whichever node has
the resources it asks for (1 GPU per point for CUDA runs, CPU cores otherwise).

Two kinds of retries, both bounded: Ray re-runs a task whose worker or node died (``max_retries``),
and the driver resubmits a point whose `bench run` failed (``retries``). Every attempt first looks
in the store for a finished run of its point, so a point whose run finished just before its node
died is not run twice. The `bench run` child dies with the Ray worker that started it (Linux
parent-death signal, SIGTERM: the engine saves a checkpoint and marks the run KILLED), so a lost
node leaves no orphan that could finish a second run of the point.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from talkbench.errors import TalkbenchError

INSTALL_HINT = "pip install 'talkbench[ray]'"


def require_ray():
    try:
        import ray
    except ImportError:
        raise TalkbenchError(f"--backend ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def _die_with_parent() -> None:  # runs in the child between fork and exec
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def forwarded_env() -> dict[str, str]:
    """The driver's MLflow settings (credentials, timeouts) that every point's `bench run` needs; the
    rest of a point's environment (TALKBENCH_HOME, caches) is its node's own."""
    return {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}


def run_point(command: list[str], point_key: tuple[str, str], sweep_blob: dict, tracking_uri: str,
              env: dict[str, str]):  # fmt: skip
    """Body of one Ray task: ``("skipped", run id)`` when the store already has the point finished,
    else ``(exit code, output)`` of the `bench run` child."""
    os.environ.update(env)
    finished = _finished_elsewhere(point_key, sweep_blob, tracking_uri)
    if finished:
        return "skipped", finished
    proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env={**os.environ, **env}, preexec_fn=_die_with_parent)  # fmt: skip
    return proc.returncode, proc.stdout


def _finished_elsewhere(point_key: tuple[str, str], sweep_blob: dict, tracking_uri: str) -> str | None:
    from talkbench.sweep import Sweep, SweepPoint, _finished_runs
    from talkbench.tracking import Tracker

    sweep = Sweep(**sweep_blob)
    sweep.points = [SweepPoint({}, int(point_key[1]), point_key[0])]
    return _finished_runs(Tracker(tracking_uri), sweep).get(point_key)


class RayBackend:
    """Runs pending points as Ray tasks on the cluster at ``address`` (None: start a local Ray)."""

    def __init__(self, address: str | None = None, cpus_per_point: float = 1.0,
                 gpus_per_point: float = 0.0, retries: int = 2, node_retries: int = 3):  # fmt: skip
        if cpus_per_point < 0 or gpus_per_point < 0:
            raise TalkbenchError("--cpus-per-point/--gpus-per-point must not be negative")
        if retries < 0:
            raise TalkbenchError("--retries must not be negative")
        self.ray = require_ray()
        self.address = address
        self.cpus, self.gpus = cpus_per_point, gpus_per_point
        self.retries, self.node_retries = retries, node_retries

    def run(self, sweep, todo: list[tuple[int, object]], command: Callable, tracker, log_dir: Path,
            echo: Callable[[str], None]) -> None:  # fmt: skip
        """Run ``todo`` (index, point) pairs; sets each point's status and log."""
        ray = self.ray
        if not ray.is_initialized():
            ray.init(address=self.address, log_to_driver=False, configure_logging=False)
        task = ray.remote(run_point).options(
            num_cpus=self.cpus, num_gpus=self.gpus, max_retries=self.node_retries, retry_exceptions=False
        )
        blob, env = _sweep_blob(sweep), forwarded_env()
        pending = {}
        attempts: dict[int, int] = {}

        def submit(i, p):
            attempts[i] = attempts.get(i, 0) + 1
            ref = task.remote(command(p), (p.config_hash, str(p.seed)), blob, tracker.uri, env)
            pending[ref] = (i, p)

        for i, p in todo:
            submit(i, p)
        total, ended = len(todo), 0
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            i, p = pending.pop(ref)
            label = " ".join(p.overrides()) + f" seed={p.seed}"
            p.log = log_dir / f"point-{i:03d}-seed{p.seed}.log"
            try:
                code, output = ray.get(ref)
            except ray.exceptions.RayError as exc:  # node died more than node_retries times, say
                code, output = -1, f"ray: {exc}"
            if code == "skipped":
                p.status, p.run_id = "skipped", output
            else:
                with p.log.open("a") as fh:
                    fh.write(output)
                if code != 0 and attempts[i] <= self.retries:
                    echo(f"  [retry {attempts[i]}/{self.retries}] {label} (exit {code}, log: {p.log})")
                    submit(i, p)
                    continue
                p.status = "done" if code == 0 else "failed"
            ended += 1
            extra = "" if p.status != "failed" else f" (exit {code}, log: {p.log})"
            echo(f"  [{ended}/{total}] [{p.status}] {label}{extra}")


def _sweep_blob(sweep) -> dict:
    return {"method": sweep.method, "dataset": sweep.dataset, "preset": sweep.preset, "axes": sweep.axes,
            "seeds": sweep.seeds, "base_overrides": sweep.base_overrides, "data_root": sweep.data_root,
            "device": sweep.device}  # fmt: skip
