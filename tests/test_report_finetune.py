"""The report's "Fine-tuning data fraction" section on constructed runs: tiny UniTalkers fine-tuned on
SynthTalk's second topology from a run on the main one at two shares (one with two seeds), and one
trained from scratch at a share; the table agrees with MLflow, the figure draws each series."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from talkbench.contract import Tag
from talkbench.reports import finetune


@pytest.fixture(scope="module")
def curve(tmp_path_factory, synthtalk_tiny):
    from talkbench import pipeline
    from talkbench.config import load_config
    from talkbench.datasets.synthtalk import generate
    from talkbench.reports.report import build_report

    tmp = tmp_path_factory.mktemp("finetune_report")
    t2 = generate(tmp / "t2", preset="tiny", seed=0, variant="topology2")
    uri = f"sqlite:///{tmp}/mlflow.db"
    quick = ["eval.n_boot=20", "unitalker.epochs=1", "unitalker.encoder_warmup_epochs=0"]

    def run(dataset, root, *sets, seed=0):
        cfg = load_config("unitalker", dataset=dataset, preset="tiny", data_root=root, seed=seed,
                          overrides=[*quick, *sets])
        return pipeline.run(cfg, tracking_uri=uri, progress=False).run_id

    source = run("synthtalk", synthtalk_tiny)
    ids = {
        ("tuned", 0.25, 0): run("synthtalk-topology2", t2, f"unitalker.finetune_head={source}",
                                "dataset.train_fraction=0.25"),
        **{("tuned", 0.5, s): run("synthtalk-topology2", t2, f"unitalker.finetune_head={source}",
                                  "dataset.train_fraction=0.5", seed=s) for s in (0, 1)},
        ("scratch", 0.5, 0): run("synthtalk-topology2", t2, "dataset.train_fraction=0.5"),
    }
    report = build_report("synthtalk-topology2", out_dir=tmp / "report", tracking_uri=uri, viewer=False,
                          log_to_runs=False, n_clips=0)
    return uri, source, ids, report


def _section(md: str) -> str:
    return md.split("## Fine-tuning data fraction", 1)[1].split("\n## ", 1)[0]


def test_the_section_tabulates_each_share_and_source_as_mlflow_logged_it(curve):
    import mlflow

    uri, source, ids, report = curve
    section = _section(report.markdown.read_text())
    image = re.search(r"\(figures/([^)]+\.png)\)", section).group(1)
    assert (report.out_dir / "figures" / image).stat().st_size > 1000
    client = mlflow.MlflowClient(uri)
    rows = [line for line in section.splitlines() if line.startswith("| 0.")]
    assert len(rows) == 3, section  # fine-tuned at 0.25 and 0.5 (two seeds, one row), scratch at 0.5
    label = f"fine-tuned from unitalker on synthtalk, run {source[:8]}"
    scale = float(client.get_run(ids[("tuned", 0.5, 0)]).data.tags[Tag.scale("lve")])
    for (kind, fraction, _), run_id in ids.items():
        run = client.get_run(run_id)
        clips = run.data.tags[Tag.TRAIN_CLIPS]
        assert int(clips) == {0.25: 8, 0.5: 12}[fraction]  # 6 clips per speaker: 2 and 3 of them kept
        series = label if kind == "tuned" else finetune.SCRATCH
        (row,) = [r for r in rows if r.startswith(f"| {fraction:g} | {series} | {clips} |")]
        seeds = [i for (k, f, _), i in ids.items() if (k, f) == (kind, fraction)]
        mean = np.mean([client.get_run(i).data.metrics["test/lve"] for i in seeds]) / scale
        assert f"| {mean:.3f}" in row and row.endswith(f"| {len(seeds)} |"), (row, mean)
    assert rows[-1].split(" | ")[1] == finetune.SCRATCH  # scratch listed after the fine-tuned series


def test_a_report_without_fine_tuned_runs_has_no_such_section(report):
    assert "Fine-tuning data fraction" not in report.markdown.read_text()


def test_the_figure_draws_one_line_per_series_with_ci_bars_where_there_are_cis():
    from talkbench.reports.figures import fraction_figure

    table = pd.DataFrame({
        "fraction": [0.1, 0.5, 1.0, 0.5],
        "series": ["fine-tuned", "fine-tuned", "fine-tuned", "from scratch"],
        "mean": [3.0, 2.0, 1.5, 2.5],
        "low": [2.5, 1.8, np.nan, 2.0],
        "high": [3.4, 2.3, np.nan, 3.1],
    })
    fig = fraction_figure(table, "LVE", "LVE (x10^-5)")
    ax = fig.axes[0]
    series = {c.get_label(): c for c in ax.containers}  # one errorbar container per series
    assert list(series) == ["fine-tuned", "from scratch"]
    line, _, (bars,) = series["fine-tuned"].lines
    np.testing.assert_allclose(np.asarray(line.get_xdata(), float), [0.1, 0.5, 1.0])
    # CI bars where a CI exists; none drawn (zero length) where it does not
    np.testing.assert_allclose([s[:, 1] for s in bars.get_segments()], [[2.5, 3.4], [1.8, 2.3], [1.5, 1.5]])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.1", "0.5", "1"]
