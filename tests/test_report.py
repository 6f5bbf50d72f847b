"""Reports from tracked runs: content, agreement with MLflow, a real browser, bad input."""

import re
import shutil

import pytest

from talkbench.errors import TalkbenchError


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A tracking store with template (1 seed), mean-motion (2 seeds) and a 2-point sweep."""
    from talkbench import pipeline
    from talkbench.config import load_config
    from talkbench.tracking import Tracker

    uri = f"sqlite:///{tmp_path_factory.mktemp('report_store')}/mlflow.db"
    ids = {}
    ids["template"] = pipeline.run(
        load_config("template", preset="tiny"), tracking_uri=uri, progress=False
    ).run_id
    ids["mean-motion"] = [
        pipeline.run(
            load_config("mean-motion", preset="tiny", seed=s), tracking_uri=uri, progress=False
        ).run_id
        for s in (0, 1)
    ]
    tracker = Tracker(uri)
    parent = tracker.create_run(
        tracker.ensure_experiment("synthtalk"),
        run_name="sweep",
        tags={
            "talkbench.kind": "sweep",
            "talkbench.method": "mean-motion",
            "talkbench.grid": '{"mean-motion.period": ["5", "10"]}',
        },
    )
    for period in (5, 10):
        cfg = load_config("mean-motion", preset="tiny", overrides=[f"mean-motion.period={period}"])
        pipeline.run(cfg, tracking_uri=uri, progress=False, parent_run_id=parent)
    tracker.finish_run(parent)
    return uri, ids


@pytest.fixture(scope="module")
def report(store, tmp_path_factory):
    from talkbench.reports.report import build_report

    uri, _ = store
    out = tmp_path_factory.mktemp("report") / "synthtalk"
    return build_report("synthtalk", out_dir=out, formats=("html", "markdown", "latex"), tracking_uri=uri)


def test_report_has_every_section_and_its_figures(report):
    md = report.markdown.read_text()
    for section in (
        "## Leaderboard",
        "## Bootstrap confidence intervals",
        "## Paired significance",
        "## Per-subject breakdown",
        "## Size and speed",
        "Wilcoxon",
        "## Ablations",
        "## Mouth opening",
    ):
        assert section in md, section
    for image in re.findall(r"\(figures/([^)]+\.png)\)", md):
        assert (report.out_dir / "figures" / image).stat().st_size > 1000
    assert "mean-motion.period" in md
    # rows of one method are told apart by the settings that differ
    assert "mean-motion (period=5) (floor)" in md and "mean-motion (period=10) (floor)" in md
    assert report.latex.read_text().startswith("% talkbench leaderboard")
    html = report.html.read_text()
    assert "data:image/png;base64," in html and 'src="figures/' not in html  # self-contained


def test_leaderboard_cell_agrees_with_mlflow(store, report):
    import mlflow

    uri, ids = store
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["synthtalk"])
    values = runs[runs["run_id"].isin(ids["mean-motion"])]["metrics.test/lve"]
    assert len(values) == 2
    mean, std = values.mean(), values.std(ddof=1)
    row = next(
        line
        for line in report.markdown.read_text().splitlines()
        if line.startswith("|") and "mean-motion" in line and "| 2 |" in line
    )
    cell = row.split("|")[5].strip().strip("*")
    shown_mean, shown_std = (float(x) for x in cell.split("±"))
    scale = 1e-5
    assert shown_mean == pytest.approx(mean / scale, rel=1e-3)
    assert shown_std == pytest.approx(std / scale, rel=1e-2, abs=1e-3)


def test_report_is_logged_with_the_runs_it_covers(store, report):
    from talkbench.tracking import Tracker

    uri, ids = store
    tracker = Tracker(uri)
    for run_id in [ids["template"], *ids["mean-motion"]]:
        names = tracker.list_artifacts(run_id, f"reports/{report.out_dir.name}")
        assert any(n.endswith("report.html") for n in names)


@pytest.mark.browser
@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian chromium not installed (make system)")
def test_report_opens_in_a_browser_with_every_image(report, tmp_path):
    from playwright.sync_api import sync_playwright

    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=shutil.which("chromium"),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(report.html.as_uri())
        page.wait_for_load_state("load")
        images = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.complete, i.naturalWidth])")
        assert len(images) >= 4
        assert all(done and width > 0 for done, width in images)
        assert page.locator("table").count() >= 4
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert not errors
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_bad_input_is_a_clear_error(store, tmp_path):
    from talkbench.reports.report import build_report

    uri, _ = store
    with pytest.raises(TalkbenchError, match="does not exist"):
        build_report("synthtalk", ["0123456789abcdef"], tmp_path / "a", tracking_uri=uri)
    with pytest.raises(TalkbenchError, match="no finished runs"):
        build_report("vocaset", out_dir=tmp_path / "b", tracking_uri=uri)
