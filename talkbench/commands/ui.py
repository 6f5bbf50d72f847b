"""`bench ui`: the MLflow UI on talkbench's tracking store, bound to loopback only.

Runs ``mlflow server`` as a subprocess (the UI and the REST API in one) on 127.0.0.1: the store holds
unpublished results and the server has no authentication, so it is never exposed on other
interfaces. The store must exist: browsing never creates one.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import typer

from talkbench.commands import one_line_errors
from talkbench.errors import TalkbenchError

HOST = "127.0.0.1"
START_TIMEOUT_S = 90.0
# MLflow >= 3.x's UI opens experiments in its global "GenAI" mode (traces overview) unless the URL or a
# click on "Model training" says otherwise; the experiment's mlflow.experimentKind tag no longer decides
RUNS_VIEW = "workflowType=machine_learning"


def server_command(uri: str, port: int, artifacts: Path | None) -> list[str]:
    """The ``mlflow server`` command line for a store (one worker; loopback only)."""
    cmd = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", uri,
        "--host", HOST,
        "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip
    if artifacts is not None:  # new experiments' artifacts beside the store, not in the cwd
        cmd += ["--artifacts-destination", artifacts.as_uri()]
    return cmd


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def wait_until_up(url: str, proc: subprocess.Popen, timeout: float = START_TIMEOUT_S) -> None:
    """Poll the server's /health until it answers; a server that exits or never answers is an error."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            code = proc.returncode
            raise TalkbenchError(f"mlflow server exited with code {code} before answering on {url}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TalkbenchError(f"mlflow server did not answer on {url} within {timeout:.0f} s")


def experiment_urls(tracker, url: str) -> list[tuple[str, str]]:
    """(name, URL of its runs table) for each talkbench experiment of the store."""
    from talkbench import contract

    return [
        (e.name, f"{url}/#/experiments/{e.experiment_id}?{RUNS_VIEW}")
        for e in tracker.client.search_experiments()
        if e.tags.get(contract.Tag.EXPERIMENT_KIND) == contract.EXPERIMENT_KIND
    ]


def ui_command(
    port: int = typer.Option(5000, "--port", help="Port on 127.0.0.1."),
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="Store to browse (default: $MLFLOW_TRACKING_URI or the home's)."
    ),
) -> None:
    """Open the MLflow UI on the tracking store (loopback only); Ctrl-C stops it."""
    with one_line_errors():
        from talkbench.tracking import Tracker, sqlite_path

        if not 0 < port < 65536:
            raise TalkbenchError(f"--port {port}: expected 1-65535")
        tracker = Tracker(tracking_uri, create=False)  # a missing store is an error, nothing is created
        if not _port_free(port):
            raise TalkbenchError(f"--port {port}: {HOST}:{port} is already in use; pick another with --port")
        db = sqlite_path(tracker.uri)
        artifacts = db.absolute().parent / "mlartifacts" if db is not None else None
        url = f"http://{HOST}:{port}"
        typer.secho(tracker.describe(), dim=True)
        proc = subprocess.Popen(server_command(tracker.uri, port, artifacts))
        try:
            wait_until_up(url, proc)
            typer.echo(f"MLflow UI: {url}/#/experiments?{RUNS_VIEW}  (Ctrl-C to stop)")
            for name, link in experiment_urls(tracker, url):
                typer.echo(f"  {name}: {link}")
            proc.wait()
        except KeyboardInterrupt:
            pass
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()


def register(app: typer.Typer) -> None:
    app.command("ui")(ui_command)
