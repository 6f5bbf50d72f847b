"""`bench ui` in headless Chromium: the experiment link it prints opens the runs table (not MLflow's
GenAI traces overview) with the run, and the run's page lists the MLflow model the run logged."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import mlflow
import pytest
from typer.testing import CliRunner

from talkbench.cli import app

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,  # a run, an mlflow server start and a browser: about a minute on a busy machine
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium not installed (make system)"),
]
UI_START_S = 180  # `bench ui` waits up to 90 s for the server itself; importing mlflow comes first


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ui(tmp_path, synthtalk_tiny):
    """A finished tiny mean-motion run in a fresh store, and `bench ui` serving that store."""
    (tmp_path / "store").mkdir()
    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    out = CliRunner().invoke(
        app,
        ["run", "--method", "mean-motion", "--preset", "tiny", "--data-root", str(synthtalk_tiny),
         "--tracking-uri", uri, "--no-progress", "--no-leaderboard"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    run_id = next(line.split()[1] for line in out.stdout.splitlines() if line.startswith("run "))
    log = tmp_path / "ui.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "talkbench.cli", "ui", "--port", str(_free_port()), "--tracking-uri", uri],
            stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + UI_START_S
        while "MLflow UI:" not in log.read_text() or "synthtalk:" not in log.read_text():
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        yield uri, run_id, log.read_text()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # bench ui and the mlflow server (with its uvicorn worker)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_experiment_opens_on_the_runs_table_and_the_run_lists_its_model(ui, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    uri, run_id, output = ui
    client = mlflow.MlflowClient(uri)
    run = client.get_run(run_id)
    (logged,) = run.outputs.model_outputs
    model = client.get_logged_model(logged.model_id)
    # the link `bench ui` prints for the experiment, on loopback
    link = re.search(r"^\s+synthtalk: (http://127\.0\.0\.1:\d+/\S+)$", output, re.M)
    assert link, output
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(link.group(1))
        run_link = page.get_by_role("link", name=run.info.run_name, exact=True)
        expect(run_link).to_be_visible(timeout=60_000)
        page.screenshot(path=str(tmp_path / "experiment.png"))
        assert re.search(rf"#/experiments/{run.info.experiment_id}/runs\b", page.url), page.url
        expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_visible()
        assert page.get_by_text("Detect Issues").count() == 0  # the GenAI traces overview's button
        expect(page.get_by_text("1 matching run")).to_be_visible()

        run_link.click()
        models = page.get_by_text("Logged models (1)")
        expect(models).to_be_visible(timeout=60_000)
        assert f"/runs/{run_id}" in page.url
        # the smallest block holding the section's title and a link named after the model: the section
        # itself, unless the model is missing from it (the metrics table links the model too)
        section = models.locator(f"xpath=ancestor::*[.//a[normalize-space(.)='{model.name}']][1]")
        expect(section).to_have_count(1)
        assert "Metrics (" not in section.inner_text() and "No models found" not in section.inner_text()
        models.scroll_into_view_if_needed()  # below the metrics: where a person scrolls to
        page.screenshot(path=str(tmp_path / "run.png"))
        browser.close()
