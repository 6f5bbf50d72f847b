"""Reaching a tracking store: which URI, whether it can be used, and bounded, retried calls to it.

No mlflow here: this is about the store's address and transport (SQLite files and their locks, HTTP
servers, their limits and credentials); :mod:`talkbench.tracking.tracker` talks MLflow over it.
"""

from __future__ import annotations

import base64
import functools
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from talkbench import paths
from talkbench.errors import TalkbenchError

STORE_FILE = "mlflow.db"  # the default store, under TALKBENCH_HOME
# bounded HTTP calls to a tracking server (MLflow's defaults retry for minutes); the user's env wins
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
_LOCK_RETRIES = 60

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C")


# -- which store ---------------------------------------------------------------------------------
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


# -- can it be used --------------------------------------------------------------------------------
def check_store(uri: str) -> None:
    """Fail early, before any data is loaded or any epoch is trained, with the reason."""
    db = sqlite_path(uri)
    if db is not None:
        _check_sqlite(uri, db)
    elif uri.startswith(("http://", "https://")):
        _check_http(uri)
    elif uri.startswith("file:") or "://" not in uri:
        if not os.environ.get("MLFLOW_ALLOW_FILE_STORE"):
            raise TalkbenchError(
                f"tracking URI '{uri}' is a file store, which MLflow >= 3.13 refuses; use "
                "sqlite:///path/mlflow.db or an http(s) server (or set MLFLOW_ALLOW_FILE_STORE=true)"
            )


def _check_sqlite(uri: str, db: Path) -> None:
    parent = db.absolute().parent
    if db.exists():
        if not os.access(db, os.W_OK):
            raise TalkbenchError(f"tracking URI '{uri}': database file {db} is not writable")
    elif not parent.is_dir():
        raise TalkbenchError(f"tracking URI '{uri}': directory {parent} does not exist (create it first)")
    elif not os.access(parent, os.W_OK):
        raise TalkbenchError(f"tracking URI '{uri}': directory {parent} is not writable")


def _check_http(uri: str) -> None:
    url = uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1"
    request = urllib.request.Request(url, headers=auth_headers())
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            resp.read(1)
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            raise TalkbenchError(
                f"tracking server '{uri}' refused access (HTTP {exc.code}); set "
                "MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN"
            ) from None
        raise TalkbenchError(
            f"tracking server '{uri}' answered HTTP {exc.code} {exc.reason}; is it an MLflow tracking server?"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TalkbenchError(f"tracking server '{uri}' cannot be reached: {reason}") from None


def auth_headers() -> dict[str, str]:
    """The credentials MLflow's own client would send (basic auth or a bearer token from the env)."""
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return {"Authorization": f"Bearer {token}"}
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    return {}


def make_home(home: Path) -> None:
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TalkbenchError(
            f"cannot create the talkbench home {home} for the tracking store ({exc.strerror}); "
            f"set {paths.HOME_ENV} or --tracking-uri"
        ) from None


def create_under_lock(db: Path, open_client: Callable[[], C], probe: Callable[[C], Any]) -> C:
    """Create/migrate a SQLite store under a file lock: concurrent first-time migrations of one fresh
    file race ("duplicate column"), so parallel runs on a new store take turns here. ``probe`` is one
    call that makes the client build the store."""
    import fcntl  # POSIX only: imported where a store is created

    with open(db.absolute().parent / f".{db.name}.init-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            client = open_client()  # may build the store
            retry_locked(probe)(client)
            return client
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# -- bounded, retried calls ------------------------------------------------------------------------
def is_locked(exc: BaseException) -> bool:
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
                if not is_locked(exc) or attempt == _LOCK_RETRIES - 1:
                    raise
                time.sleep(min(0.05 * 2**attempt, 1.0))
        raise AssertionError("unreachable")

    return wrapper  # type: ignore[return-value]


def quiet_mlflow_logs() -> None:
    # schema migrations log at INFO on every fresh store; keep the CLI output to what matters
    for name in ("mlflow.store.db.utils", "alembic", "alembic.runtime.migration", "mlflow.tracking"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # the system-metrics thread warns on every failed call; a dead server is reported once, by us
    logging.getLogger("mlflow.system_metrics").setLevel(logging.CRITICAL)


def bound_http_calls(uri: str) -> None:
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


class GuardedClient:
    """A client (``MlflowClient``) whose transport failures become one :class:`TrackingUnavailable` line."""

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
                        f"tracking store '{self._uri}' stopped answering ({name}): {first_line(exc)}"
                    ) from None
                raise

        return call


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
