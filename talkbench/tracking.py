"""MLflow tracking: the only module of talkbench that imports mlflow.

What a run writes and what readers rely on (experiment per dataset, params, metric names, tag keys,
artifact paths, prediction file names) is the run contract in :mod:`talkbench.contract`; where run
directories live is :mod:`talkbench.paths`. This module implements them on an MLflow store: the
:class:`Tracker` (one tracking URI), the engine's :class:`MlflowLogger`, git/package provenance and
the ``run.json`` records that let ``--resume`` reopen the same MLflow run.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from talkbench import contract, paths
from talkbench.errors import TalkbenchError
from talkbench.paths import RUN_RECORD, run_dir, runs_root

# artifact downloads print a tqdm bar each; reports download dozens of small files
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

STORE_FILE = "mlflow.db"  # the default store, under TALKBENCH_HOME
# bounded HTTP calls to a tracking server (MLflow's defaults retry for minutes); the user's env wins
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
SYSTEM_METRICS_INTERVAL_S = 10.0  # MLflow's default; MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL overrides
MAX_PARAM_CHARS = 6000  # mlflow/utils/validation.py limits
MAX_TAG_CHARS = 8000
MAX_BATCH = 100
MAX_METRIC_BATCH = 1000
_LOCK_RETRIES = 60

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# locations
# ---------------------------------------------------------------------------------------------
def default_tracking_uri() -> str:
    """One store that does not move with the working directory: ``$TALKBENCH_HOME/mlflow.db``."""
    return f"sqlite:///{paths.home() / STORE_FILE}"


def resolve_tracking_uri(uri: str | None = None) -> str:
    """``--tracking-uri`` wins, then ``MLFLOW_TRACKING_URI``, then :func:`default_tracking_uri`.

    A relative ``sqlite:///x.db`` is made absolute (against the cwd now), so the URI saved in a run's
    record names the same store from any directory.
    """
    chosen = uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()
    db = sqlite_path(chosen)
    if db is None or db.is_absolute():
        return chosen
    query = chosen.partition("?")[1] + chosen.partition("?")[2]
    return f"sqlite:///{db.absolute()}{query}"


def is_default_store(uri: str) -> bool:
    return uri == default_tracking_uri()


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative to the cwd for three slashes), else None."""
    if not uri.startswith("sqlite:"):
        return None
    rest = uri[len("sqlite:") :]
    if not rest.startswith("///"):
        raise TalkbenchError(
            f"tracking URI '{uri}': expected sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    path = rest[3:].split("?", 1)[0]
    if not path or path == ":memory:":
        raise TalkbenchError(f"tracking URI '{uri}': an in-memory SQLite store cannot be shared; give a file")
    return Path(path)


def _is_locked(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "database is locked" in text or "database table is locked" in text


def retry_locked(fn: F) -> F:
    """Retry a store call on SQLite's "database is locked" (parallel writers) with a short backoff."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        for attempt in range(_LOCK_RETRIES):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # mlflow wraps sqlalchemy errors in MlflowException
                if not _is_locked(exc) or attempt == _LOCK_RETRIES - 1:
                    raise
                time.sleep(min(0.05 * 2**attempt, 1.0))
        raise AssertionError("unreachable")

    return wrapper  # type: ignore[return-value]


def _quiet_mlflow_logs() -> None:
    # schema migrations log at INFO on every fresh store; keep the CLI output to what matters
    for name in ("mlflow.store.db.utils", "alembic", "alembic.runtime.migration", "mlflow.tracking"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # the system-metrics thread warns on every failed call; a dead server is reported once, by us
    logging.getLogger("mlflow.system_metrics").setLevel(logging.CRITICAL)


def _bound_http_calls(uri: str) -> None:
    """Every later call to an http(s) store gives up after ~30 s instead of MLflow's minutes of retries."""
    if uri.startswith(("http://", "https://")):
        for key, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)


class TrackingUnavailable(TalkbenchError):
    """The tracking store stopped answering after the run started (server down, network gone)."""


def _is_unreachable(exc: BaseException) -> bool:
    """A failed transport (not a refused request such as a missing run): MLflow's REST client wraps
    connection errors, timeouts and exhausted retries as "API request to ... failed with exception"."""
    text = str(exc)
    if "API request to" in text and ("failed with exception" in text or "Max retries" in text):
        return True
    try:
        import requests
    except ImportError:  # pragma: no cover - mlflow depends on requests
        return False
    return isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout)


class _GuardedClient:
    """``MlflowClient`` whose transport failures become one :class:`TrackingUnavailable` line."""

    def __init__(self, client, uri: str):
        self._client = client
        self._uri = uri

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args, **kwargs):
            try:
                return attr(*args, **kwargs)
            except Exception as exc:
                if _is_unreachable(exc):
                    raise TrackingUnavailable(
                        f"tracking store '{self._uri}' stopped answering ({name}): {_first_line(exc)}"
                    ) from None
                raise

        return call


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


# ---------------------------------------------------------------------------------------------
# provenance
# ---------------------------------------------------------------------------------------------
def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def git_info(cwd: Path | None = None) -> dict[str, str]:
    """Commit, dirty flag and diff of the source tree talkbench runs from ("unknown" outside git)."""
    cwd = cwd or Path(__file__).resolve().parent.parent
    commit = _git(["rev-parse", "HEAD"], cwd)
    if commit is None:
        return {"commit": "unknown", "dirty": "unknown", "diff": ""}
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd) or ""
    dirty = bool(status.strip())
    diff = (_git(["diff", "HEAD"], cwd) or "") if dirty else ""
    return {"commit": commit.strip(), "dirty": str(dirty).lower(), "diff": diff}


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for pkg in ("talkbench", "torch", "mlflow", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out


# ---------------------------------------------------------------------------------------------
# the tracker
# ---------------------------------------------------------------------------------------------
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
            _make_home(self._db.parent)
        self.check()
        from mlflow import MlflowClient

        _quiet_mlflow_logs()
        _bound_http_calls(self.uri)
        try:
            if self._db is not None and create:
                client = self._init_sqlite(self._db, MlflowClient)
            else:
                client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)  # models beside runs
        except TalkbenchError:
            raise
        except Exception as exc:
            raise TalkbenchError(f"tracking URI '{self.uri}' cannot be used: {_first_line(exc)}") from None
        self.client = _GuardedClient(client, self.uri)

    def describe(self) -> str:
        """``store: <uri>`` for the dim line that commands reading the store print."""
        return f"store: {self.uri}"

    def _init_sqlite(self, db: Path, client_cls):
        """Create/migrate the store under a file lock: concurrent first-time migrations of one fresh
        SQLite file race ("duplicate column"), so parallel runs on a new store take turns here."""
        import fcntl

        with open(db.absolute().parent / f".{db.name}.init-lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                client = client_cls(tracking_uri=self.uri, registry_uri=self.uri)  # may build the store
                retry_locked(client.search_experiments)(max_results=1)
                return client
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # -- connectivity ---------------------------------------------------------------------------
    def check(self) -> None:
        """Fail early, before any data is loaded or any epoch is trained, with the reason."""
        if self._db is not None:
            self._check_sqlite(self._db)
        elif self.uri.startswith(("http://", "https://")):
            self._check_http()
        elif self.uri.startswith("file:") or "://" not in self.uri:
            if not os.environ.get("MLFLOW_ALLOW_FILE_STORE"):
                raise TalkbenchError(
                    f"tracking URI '{self.uri}' is a file store, which MLflow >= 3.13 refuses; use "
                    "sqlite:///path/mlflow.db or an http(s) server (or set MLFLOW_ALLOW_FILE_STORE=true)"
                )

    def _check_sqlite(self, db: Path) -> None:
        parent = db.absolute().parent
        if db.exists():
            if not os.access(db, os.W_OK):
                raise TalkbenchError(f"tracking URI '{self.uri}': database file {db} is not writable")
        elif not parent.is_dir():
            raise TalkbenchError(
                f"tracking URI '{self.uri}': directory {parent} does not exist (create it first)"
            )
        elif not os.access(parent, os.W_OK):
            raise TalkbenchError(f"tracking URI '{self.uri}': directory {parent} is not writable")

    def _check_http(self) -> None:
        url = self.uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1"
        request = urllib.request.Request(url, headers=_auth_headers())
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                resp.read(1)
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise TalkbenchError(
                    f"tracking server '{self.uri}' refused access (HTTP {exc.code}); set "
                    "MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN"
                ) from None
            raise TalkbenchError(
                f"tracking server '{self.uri}' answered HTTP {exc.code} {exc.reason}; "
                "is it an MLflow tracking server?"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TalkbenchError(f"tracking server '{self.uri}' cannot be reached: {reason}") from None

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
            if _is_locked(exc) or isinstance(exc, TrackingUnavailable):
                raise
            # another process may have created it between the two calls
            exp = self.client.get_experiment_by_name(name)
            if exp is not None:
                return exp.experiment_id
            raise TalkbenchError(
                f"tracking URI '{self.uri}': cannot create experiment '{name}': {_first_line(exc)}"
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
            log.warning("system metrics not logged: %s", _first_line(exc))
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
    def get_run(self, run_id: str):
        """The MLflow ``Run`` (``.info``, ``.data.params/metrics/tags``); clear error if missing."""
        try:
            return self.client.get_run(run_id)
        except Exception as exc:
            if _is_locked(exc) or isinstance(exc, TrackingUnavailable):
                raise
            raise TalkbenchError(f"run '{run_id}' does not exist in tracking store '{self.uri}'") from None

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

    def download_artifacts(self, run_id: str, path: str, dst: str | Path | None = None) -> Path:
        self.get_run(run_id)
        dst = Path(dst) if dst is not None else Path(tempfile.mkdtemp(prefix="talkbench-artifacts-"))
        dst.mkdir(parents=True, exist_ok=True)
        try:
            return Path(self.client.download_artifacts(run_id, path, str(dst)))
        except TrackingUnavailable:
            raise
        except Exception as exc:
            raise TalkbenchError(f"run '{run_id}' has no artifact '{path}': {_first_line(exc)}") from None

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[str]:
        return [a.path for a in self.client.list_artifacts(run_id, path)]

    def metric_history(self, run_id: str, key: str):
        """Every logged value of one metric as a DataFrame with columns step, value, timestamp."""
        import pandas as pd

        self.get_run(run_id)
        hist = self.client.get_metric_history(run_id, key)
        rows = sorted((m.step, m.value, m.timestamp) for m in hist)
        return pd.DataFrame(rows, columns=["step", "value", "timestamp"])


def _auth_headers() -> dict[str, str]:
    """The credentials MLflow's own client would send (basic auth or a bearer token from the env)."""
    import base64

    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return {"Authorization": f"Bearer {token}"}
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    return {}


def _make_home(home: Path) -> None:
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TalkbenchError(
            f"cannot create the talkbench home {home} for the tracking store ({exc.strerror}); "
            f"set {paths.HOME_ENV} or --tracking-uri"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


# ---------------------------------------------------------------------------------------------
# the engine's logger
# ---------------------------------------------------------------------------------------------
class MlflowLogger:
    """The engine's logger protocol (``log_metrics(dict, step)``, ``log_artifact(path)``) for one run."""

    def __init__(self, tracker: Tracker, run_id: str):
        self.tracker = tracker
        self.run_id = run_id

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if metrics:
            self.tracker.log_metrics(self.run_id, metrics, step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if artifact_path is None and Path(path).suffix in (".pt", ".ckpt", ".pth"):
            artifact_path = contract.CHECKPOINTS_DIR  # the engine logs its final weights without a folder
        self.tracker.log_artifact(self.run_id, path, artifact_path)


# ---------------------------------------------------------------------------------------------
# run directories
# ---------------------------------------------------------------------------------------------
def write_run_record(run_id: str, **fields: Any) -> Path:
    """Create/update the run's record (``paths.run_dir(run_id) / RUN_RECORD``); returns the run directory."""
    d = run_dir(run_id)
    d.mkdir(parents=True, exist_ok=True)
    path = d / RUN_RECORD
    record = json.loads(path.read_text()) if path.exists() else {"run_id": run_id, "created": time.time()}
    record.update(fields)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str))
    tmp.replace(path)
    return d


def read_run_record(run_id: str) -> dict:
    path = run_dir(run_id) / RUN_RECORD
    if not path.exists():
        raise TalkbenchError(
            f"--resume {run_id}: no run directory {path.parent} (runs live under {runs_root()})"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise TalkbenchError(f"--resume {run_id}: {path} is not valid JSON ({exc})") from None


def last_unfinished_run(resumable: Callable[[str], bool] | None = None) -> str:
    """Id of the newest run directory whose run has not finished (for ``--resume last``); with
    ``resumable``, the newest one it accepts (run folders that cannot be resumed are passed over)."""
    candidates = []
    for path in runs_root().glob(f"*/{RUN_RECORD}"):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if not record.get("finished"):
            candidates.append((record.get("created", 0.0), path.parent.name))
    for _, run_id in sorted(candidates, reverse=True):
        if resumable is None or resumable(run_id):
            return run_id
    what = "unfinished run"
    if candidates:
        what = f"resumable run ({len(candidates)} unfinished, none with a checkpoint)"
    raise TalkbenchError(f"nothing to resume: --resume last found no {what} under {runs_root()}")
