"""Reports from tracked runs: content, agreement with MLflow, a real browser, bad input."""

import re
import shutil

import pytest

from talkbench.errors import TalkbenchError


def test_report_has_every_section_and_its_figures(report):
    md = report.markdown.read_text()
    for section in (
        "## Leaderboard",
        "## Paired comparisons",
        "## Per-subject breakdown",
        "## Size and speed",
        "## Ablations",
        "## Mouth opening",
        "## Viewer",
    ):
        assert section in md, section
    assert (report.out_dir / "viewer" / "index.html").is_file()  # the embedded viewer's folder
    assert len(list((report.out_dir / "viewer" / "data").glob("*/clip.js"))) == 3  # the shown clips
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
    row = next(  # the leaderboard's row, not the provenance table's (whose threads column can read 2)
        line
        for line in _leaderboard_table(report.markdown.read_text()).splitlines()
        if "mean-motion" in line and "| 2 |" in line
    )
    cell = row.split("|")[5].strip().strip("*")
    shown_mean, shown_std = (float(x) for x in re.match(r"([-\d.]+) ± ([-\d.]+)", cell).groups())
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


def _leaderboard_table(md: str) -> str:
    part = md.split("## Leaderboard", 1)[1]
    return "\n".join(line for line in part.splitlines() if line.startswith("|") or line.startswith("Cells"))


def test_report_shows_the_metrics_that_carry_the_claims(report):
    header = next(
        line for line in report.markdown.read_text().split("## Leaderboard")[1].splitlines() if "LVE" in line
    )
    for name in (
        "LVE",
        "MVE",
        "FDD",
        "articulation log err",
        "upper face log err",
        "bilabial recall",
        "vowel open rate",
    ):
        assert name in header, name


def test_report_from_one_seed_prints_no_ci_and_no_zero_spread(store, tmp_path):
    from talkbench.reports.report import build_report

    uri, ids = store
    one = build_report(
        "synthtalk",
        [ids["template"], ids["mean-motion"][0]],
        tmp_path / "one",
        ("markdown",),
        tracking_uri=uri,
        log_to_runs=False,
    )
    md = one.markdown.read_text()
    assert "no CI: one seed" in md and "no claim: one seed" in md
    assert "± 0" not in md and "±" not in _leaderboard_table(md).split("Cells")[0]
    assert not re.search(r"\[-?[\d.]+, -?[\d.]+\]", md), re.search(r".*\[-?[\d.]+, .*", md)  # no interval
    assert "**" not in _leaderboard_table(md)  # nothing claimed best


def test_seeds_with_few_clips_give_a_spread_but_no_ci(report):
    """mean-motion has 2 seeds on SynthTalk tiny's few test clips: std yes, CI no, and the why."""
    md = report.markdown.read_text()
    row = next(
        line for line in _leaderboard_table(md).splitlines() if "mean-motion" in line and "| 2 |" in line
    )
    assert "±" in row and "no CI:" in row and "clips (< 8)" in row and "[" not in row


def test_one_number_format_per_column(report):
    md = report.markdown.read_text()
    table = md.split("## Per-subject breakdown", 1)[1].split("##", 1)[0]
    rows = [line.split("|")[2:-1] for line in table.splitlines() if line.startswith("| SynthTalk")]
    assert rows
    for column in zip(*rows):
        decimals = {len(c.strip().split(".")[1]) if "." in c else 0 for c in column if c.strip() != "–"}
        assert len(decimals) == 1, column


def test_ablation_with_one_seed_per_point_claims_no_spread(report):
    md = report.markdown.read_text()
    ablation = md.split("## Ablations", 1)[1].split("## Mouth", 1)[0]
    rows = [line for line in ablation.splitlines() if line.startswith("| 5") or line.startswith("| 10")]
    assert len(rows) == 2 and all("±" not in r for r in rows)


def test_mixed_commits_and_versions_are_a_warning(store):
    from talkbench.contract import Tag, column
    from talkbench.reports.report import _warning_section
    from talkbench.tracking import Tracker

    uri, ids = store
    runs = Tracker(uri).search_runs("synthtalk")
    assert _warning_section(runs.assign(**{column(Tag.GIT_COMMIT): "a" * 40}), runs.iloc[0:0]) == []
    commits = ["a" * 40] * (len(runs) - 1) + ["b" * 40]
    lines = "\n".join(_warning_section(runs.assign(**{column(Tag.GIT_COMMIT): commits}), runs.iloc[0:0]))
    assert "Warning: mixed runs" in lines and "2 commits" in lines
    assert f"`{'b' * 12}`: 1 run(s)" in lines


def _history(values):
    import pandas as pd

    return pd.DataFrame({"step": range(len(values)), "value": values})


def test_training_curves_compare_like_with_like():
    from talkbench.reports.figures import training_figure

    curves = {
        "memorytalker (memory=false)": {
            # stage1: the same terms both sides -> one panel; stage2: different terms -> two panels
            "stage1/train/loss": _history([1.0, 0.5, 0.3]),
            "stage1/train/mse": _history([1.0, 0.5, 0.3]),
            "stage1/val/loss": _history([1.1, 0.6, 0.4]),
            "stage1/val/mse": _history([1.1, 0.6, 0.4]),
            "stage2/train/loss": _history([1e-2]),  # one epoch
            "stage2/train/mem": _history([1e-2]),
            "stage2/val/loss": _history([1e-6]),
        }
    }
    fig = training_figure(curves)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [
        "stage stage1: training and validation loss",
        "stage stage2: training loss",
        "stage stage2: validation loss",
    ]
    one_epoch = fig.axes[1].get_lines()
    assert len(one_epoch) == 1 and len(one_epoch[0].get_xdata()) == 1 and one_epoch[0].get_marker() == "o"
    legend = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert legend == ["memorytalker (memory=false) train [loss: mem]"]
    assert len(fig.axes[0].get_lines()) == 2


def test_ablation_series_and_title_name_settings_and_seeds():
    import pandas as pd

    from talkbench.reports.figures import ablation_figure
    from talkbench.reports.report import _setting_labels

    runs = pd.DataFrame(
        {"params.memorytalker.stage2": [True, False], "params.dataset.style_coupling": [0.0, 0.8]}
    )
    labels = _setting_labels(runs, ["params.memorytalker.stage2", "params.dataset.style_coupling"])
    assert labels.tolist() == ["stage2=True, style_coupling=0.0", "stage2=False, style_coupling=0.8"]
    table = pd.DataFrame(
        {
            "memorytalker.memory": ["False", "True", "False", "True"],
            "series": ["stage2=True"] * 2 + ["stage2=False"] * 2,
            "mean": [2.7, 2.8, 2.9, 3.0],
            "std": [float("nan"), float("nan"), 0.1, 0.2],
            "count": [1, 1, 1, 1],
        }
    )
    fig = ablation_figure(table, "memorytalker.memory", "LVE", "LVE ↓")
    (ax,) = fig.axes
    assert "(one seed)" in ax.get_title() and "±" not in ax.get_title()
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["stage2=False", "stage2=True"]
    assert ax.get_xlabel() == "memorytalker.memory"
    several = ablation_figure(table.assign(count=3), "memorytalker.memory", "LVE", "LVE ↓")
    assert "mean ± std over seeds" in several.axes[0].get_title()
