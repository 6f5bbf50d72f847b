"""The Tracker: one MLflow store with talkbench's conventions, and the engine's logger on it.

What a run writes and what readers rely on (experiment per dataset, params, metric names, tag keys,
artifact paths, prediction file names) is the run contract in :mod:`talkbench.contract`; reaching the
store (URIs, checks, SQLite retries, HTTP limits) is :mod:`talkbench.tracking.store`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from talkbench import contract
from talkbench.errors import TalkbenchError

from .store import (
    GuardedClient,
    TrackingUnavailable,
    bound_http_calls,
    check_store,
    create_under_lock,
    first_line,
    is_default_store,
    is_locked,
    make_home,
    quiet_mlflow_logs,
    resolve_tracking_uri,
    retry_locked,
    sqlite_path,
)

# artifact downloads print a tqdm bar each; reports download dozens of small files
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

SYSTEM_METRICS_INTERVAL_S = 10.0  # MLflow's default; MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL overrides
MAX_PARAM_CHARS = 6000  # mlflow/utils/validation.py limits
MAX_TAG_CHARS = 8000
MAX_BATCH = 100
MAX_METRIC_BATCH = 1000
_RUN_ID = re.compile(r"[A-Za-z0-9_-]+")  # MLflow's are 32 hex digits

log = logging.getLogger(__name__)


class Tracker:
    """A tracking store (one URI) with talkbench's conventions; wraps ``mlflow.MlflowClient``."""

    def __init__(self, uri: str | None = None, create: bool = True):
        """``create=False`` (read-only commands): a SQLite store that does not exist is an error and
        nothing is written (no database, no folder, no lock file)."""
        self.uri = resolve_tracking_uri(uri)
        self._db = sqlite_path(self.uri)
        if self._db is not None and not create and not self._db.is_file():
            raise TalkbenchError(
                f"no tracking store at {self._db} ({self.uri}); nothing was created. Runs are logged "
                "there by `bench run`; point elsewhere with --tracking-uri or MLFLOW_TRACKING_URI"
            )
        if self._db is not None and create and is_default_store(self.uri):
            make_home(self._db.parent)
        check_store(self.uri)  # fails early, with the reason, before any data is loaded
        from mlflow import MlflowClient

        quiet_mlflow_logs()
        bound_http_calls(self.uri)

        def open_client():
            return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)  # models beside runs

        try:
            if self._db is not None and create:
                client = create_under_lock(
                    self._db, open_client, lambda c: c.search_experiments(max_results=1)
                )
            else:
                client = open_client()
        except TalkbenchError:
            raise
        except Exception as exc:
            raise TalkbenchError(f"tracking URI '{self.uri}' cannot be used: {first_line(exc)}") from None
        self.client = GuardedClient(client, self.uri)

    def describe(self) -> str:
        """``store: <uri>`` for the dim line that commands reading the store print."""
        return f"store: {self.uri}"

    # -- experiments and runs -------------------------------------------------------------------
    def artifact_location(self, experiment: str) -> str | None:
        # next to the SQLite file rather than MLflow's ./mlruns in whatever the cwd happens to be
        if self._db is None:
            return None
        return (self._db.absolute().parent / "mlartifacts" / experiment).as_uri()

    @retry_locked
    def ensure_experiment(self, name: str) -> str:
        """Id of the experiment ``name``, created (with its artifact location) if missing; tagged
        ``mlflow.experimentKind`` so the UI opens its runs table (older experiments get the tag too)."""
        kind = {contract.Tag.EXPERIMENT_KIND: contract.EXPERIMENT_KIND}
        try:
            exp = self.client.get_experiment_by_name(name)
            if exp is not None:
                if exp.lifecycle_stage == "deleted":
                    self.client.restore_experiment(exp.experiment_id)
                if exp.tags.get(contract.Tag.EXPERIMENT_KIND) != contract.EXPERIMENT_KIND:
                    self.client.set_experiment_tag(exp.experiment_id, *next(iter(kind.items())))
                return exp.experiment_id
            return self.client.create_experiment(
                name, artifact_location=self.artifact_location(name), tags=kind
            )
        except Exception as exc:
            if is_locked(exc) or isinstance(exc, TrackingUnavailable):
                raise
            # another process may have created it between the two calls
            exp = self.client.get_experiment_by_name(name)
            if exp is not None:
                return exp.experiment_id
            raise TalkbenchError(
                f"tracking URI '{self.uri}': cannot create experiment '{name}': {first_line(exc)}"
            ) from None

    @retry_locked
    def create_run(
        self,
        experiment_id: str,
        run_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        parent_run_id: str | None = None,
    ) -> str:
        all_tags = {k: _fmt(v)[:MAX_TAG_CHARS] for k, v in (tags or {}).items()}
        if parent_run_id:
            all_tags[contract.Tag.PARENT_RUN_ID] = parent_run_id
        run = self.client.create_run(experiment_id, run_name=run_name, tags=all_tags)
        return run.info.run_id

    @retry_locked
    def reopen_run(self, run_id: str) -> None:
        self.get_run(run_id)
        self.client.update_run(run_id, status="RUNNING")

    @retry_locked
    def finish_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    @contextlib.contextmanager
    def system_metrics(self, run_id: str, resumed: bool = False) -> Iterator[None]:
        """MLflow's own system metrics (``system/*``: CPU, memory, disk, network, GPU) while inside.

        Never fails the run: without psutil, or with a store that went away, the block runs unmonitored.
        """
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            monitor = SystemMetricsMonitor(
                run_id,
                sampling_interval=SYSTEM_METRICS_INTERVAL_S,
                resume_logging=resumed,
                tracking_uri=self.uri,
            )
            monitor.start()
        except Exception as exc:  # psutil missing, store unreachable
            log.warning("system metrics not logged: %s", first_line(exc))
            monitor = None
        try:
            yield
        finally:
            if monitor is not None:
                # finish() joins the sampling thread and flushes; bounded so a dead store cannot hang us
                stopper = threading.Thread(target=monitor.finish, daemon=True)
                stopper.start()
                stopper.join(timeout=15)

    # -- logging --------------------------------------------------------------------------------
    @retry_locked
    def _log_batch(self, run_id: str, metrics=(), params=(), tags=()) -> None:
        self.client.log_batch(run_id, metrics=list(metrics), params=list(params), tags=list(tags))

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Log a flattened config as params (values cut to 6000 chars, batches of 100).

        Params are immutable in MLflow: keys already on the run (a resumed run) are skipped.
        """
        from mlflow.entities import Param

        existing = self.get_run(run_id).data.params
        items = [
            Param(k, _fmt(v)[:MAX_PARAM_CHARS]) for k, v in _flatten(params).items() if k not in existing
        ]
        for chunk in _chunks(items, MAX_BATCH):
            self._log_batch(run_id, params=chunk)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, _fmt(v)[:MAX_TAG_CHARS]) for k, v in tags.items()]
        for chunk in _chunks(items, MAX_BATCH):
            self._log_batch(run_id, tags=chunk)

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = []
        for k, v in metrics.items():
            value = float(v.item() if hasattr(v, "item") else v)
            items.append(Metric(k, value, now, int(step or 0)))
        for chunk in _chunks(items, MAX_METRIC_BATCH):
            self._log_batch(run_id, metrics=chunk)

    @retry_locked
    def log_dataset(
        self, run_id: str, name: str, source: str | Path, digest: str, context: str = "test"
    ) -> None:
        """The dataset as an MLflow input: a MetaDataset with an explicit local source and our digest."""
        from mlflow.data.dataset_source_registry import get_registered_sources
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag

        local = next(c for c in get_registered_sources() if c.__name__ == "LocalArtifactDatasetSource")
        dataset = MetaDataset(local(str(source)), name=name, digest=digest or None)
        entry = DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)])
        self.client.log_inputs(run_id, datasets=[entry])

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(run_id, str(path), artifact_path)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, text, artifact_file)

    def log_table(self, run_id: str, table, artifact_file: str) -> None:
        """A per-sequence table as CSV (for scripts) and as an MLflow table (for the UI)."""
        stem = artifact_file.rsplit(".", 1)[0]
        self.client.log_text(run_id, table.to_csv(index=False), stem + ".csv")
        self.client.log_table(run_id, table, stem + ".json")

    # -- reading --------------------------------------------------------------------------------
    def registered_run_id(self, ref: str) -> str:
        """The run that logged the registered model version ``models:/NAME/VERSION`` or
        ``models:/NAME@ALIAS``; one error when the registry has no such version."""
        body = ref.removeprefix(contract.MODELS_SCHEME)
        name, at, alias = body.partition("@")
        if not at:
            name, _, number = body.partition("/")
            if not number.isdigit():
                raise TalkbenchError(f"'{ref}': expected models:/NAME/VERSION or models:/NAME@ALIAS")
        try:
            if at:
                version = self.client.get_model_version_by_alias(name, alias)
            else:
                version = self.client.get_model_version(name, number)
        except Exception as exc:
            raise TalkbenchError(
                f"'{ref}' is not in the model registry of '{self.uri}' ({str(exc).splitlines()[0][:200]})"
            ) from None
        if not version.run_id:
            raise TalkbenchError(f"'{ref}' was not logged by a talkbench run (no run id)")
        return version.run_id

    def get_run(self, run_id: str):
        """The MLflow ``Run`` (``.info``, ``.data.params/metrics/tags``); clear error if missing."""
        try:
            return self.client.get_run(run_id)
        except Exception as exc:
            if is_locked(exc) or isinstance(exc, TrackingUnavailable):
                raise
            raise TalkbenchError(f"run '{run_id}' does not exist in tracking store '{self.uri}'") from None

    def experiment_names(self) -> list[str]:
        """Names of the store's active experiments."""
        return [e.name for e in self.client.search_experiments()]

    def search_runs(
        self,
        dataset: str,
        filter_string: str = "",
        finished_only: bool = True,
    ):
        """Runs of one dataset's experiment as a DataFrame (empty if the experiment does not exist).

        Columns as ``mlflow.search_runs``: ``run_id, status, start_time, metrics.*, params.*, tags.*``.
        Keys containing ``/`` need backticks in ``filter_string`` (``metrics.`test/lve` < 1``).
        """
        import pandas as pd

        exp = self.client.get_experiment_by_name(dataset)
        if exp is None:
            return pd.DataFrame()
        clauses = [c for c in (filter_string, "attributes.status = 'FINISHED'" if finished_only else "") if c]
        rows, token = [], None
        while True:
            page = self.client.search_runs(
                [exp.experiment_id],
                filter_string=" and ".join(clauses),
                max_results=1000,
                order_by=["attributes.start_time DESC"],
                page_token=token,
            )
            for run in page:
                row = {
                    "run_id": run.info.run_id,
                    "experiment_id": run.info.experiment_id,
                    "run_name": run.info.run_name,
                    "status": run.info.status,
                    "artifact_uri": run.info.artifact_uri,
                    "start_time": pd.to_datetime(run.info.start_time, unit="ms", utc=True),
                    "end_time": pd.to_datetime(run.info.end_time, unit="ms", utc=True)
                    if run.info.end_time
                    else pd.NaT,
                }
                row.update({contract.metric_column(k): v for k, v in run.data.metrics.items()})
                row.update({contract.param_column(k): v for k, v in run.data.params.items()})
                row.update({contract.column(k): v for k, v in run.data.tags.items()})
                rows.append(row)
            token = page.token
            if not token:
                break
        return pd.DataFrame(rows)

    def run_statuses(self, run_ids: Iterable[str]) -> dict[str, tuple[str, int]]:
        """Run id -> (MLflow status, start time in ms) for those of ``run_ids`` that this store holds
        (in any experiment; deleted runs left out): one search per 100 ids, not a call per run."""
        from mlflow.entities import ViewType

        ids = sorted({i for i in run_ids if _RUN_ID.fullmatch(i)})  # run-directory names, quoted below
        experiments, token = [], None
        while ids:
            page = self.client.search_experiments(view_type=ViewType.ALL, page_token=token)
            experiments += [e.experiment_id for e in page]
            token = page.token
            if not token:
                break
        out: dict[str, tuple[str, int]] = {}
        for chunk in _chunks(ids, MAX_BATCH) if experiments else ():
            listed = ", ".join(f"'{i}'" for i in chunk)
            runs = retry_locked(self.client.search_runs)(
                experiments, filter_string=f"attributes.run_id IN ({listed})", max_results=len(chunk)
            )
            out.update({r.info.run_id: (r.info.status, r.info.start_time) for r in runs})
        return out

    def download_artifacts(self, run_id: str, path: str, dst: str | Path | None = None) -> Path:
        self.get_run(run_id)
        dst = Path(dst) if dst is not None else Path(tempfile.mkdtemp(prefix="talkbench-artifacts-"))
        dst.mkdir(parents=True, exist_ok=True)
        try:
            return Path(self.client.download_artifacts(run_id, path, str(dst)))
        except TrackingUnavailable:
            raise
        except Exception as exc:
            raise TalkbenchError(f"run '{run_id}' has no artifact '{path}': {first_line(exc)}") from None

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[str]:
        return [a.path for a in self.client.list_artifacts(run_id, path)]

    def metric_history(self, run_id: str, key: str):
        """Every logged value of one metric as a DataFrame with columns step, value, timestamp."""
        import pandas as pd

        self.get_run(run_id)
        hist = self.client.get_metric_history(run_id, key)
        rows = sorted((m.step, m.value, m.timestamp) for m in hist)
        return pd.DataFrame(rows, columns=["step", "value", "timestamp"])


class MlflowLogger:
    """The engine's logger protocol (``log_metrics(dict, step)``, ``log_artifact(path)``) for one run."""

    def __init__(self, tracker: Tracker, run_id: str):
        self.tracker = tracker
        self.run_id = run_id

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if metrics:
            self.tracker.log_metrics(self.run_id, metrics, step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if artifact_path is None and Path(path).suffix in (".pt", ".ckpt", ".pth", ".safetensors", ".sha256"):
            artifact_path = contract.CHECKPOINTS_DIR  # the engine logs its final weights without a folder
        self.tracker.log_artifact(self.run_id, path, artifact_path)


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return json.dumps([v for v in value], default=str)
    return str(value)


def _chunks(items: list, n: int) -> Iterable[list]:
    for i in range(0, len(items), n):
        yield items[i : i + n]
