"""A report from real runs with two speech encoders: the warning at the top, each run's encoder and
dataset digest in the provenance table, the speed section from the logged speed profile."""

from __future__ import annotations

import pytest

TINY_W2V = (
    "faceformer.audio.hf_overrides={num_hidden_layers: 1, num_attention_heads: 2, hidden_size: 16, "
    "intermediate_size: 32, conv_dim: [16, 16, 16, 16, 16, 16, 16], num_conv_pos_embeddings: 16, "
    "num_conv_pos_embedding_groups: 4, layerdrop: 0.0}"
)


@pytest.fixture(scope="module")
def two_encoder_report(tmp_path_factory):
    from talkbench import pipeline
    from talkbench.config import load_config
    from talkbench.reports.report import build_report

    uri = f"sqlite:///{tmp_path_factory.mktemp('enc_store')}/mlflow.db"
    base = ["faceformer.epochs=1", "eval.speed_clip_s=2"]
    mel = pipeline.run(load_config("faceformer", preset="tiny", overrides=base), tracking_uri=uri,
                       progress=False)
    w2v_cfg = load_config("faceformer", preset="tiny", overrides=[
        *base, "faceformer.audio.kind=wav2vec2", "faceformer.audio.pretrained=false", TINY_W2V,
    ])
    w2v = pipeline.run(w2v_cfg, tracking_uri=uri, progress=False)
    out = tmp_path_factory.mktemp("enc_report") / "synthtalk"
    report = build_report("synthtalk", out_dir=out, tracking_uri=uri, n_clips=1, viewer=False,
                          log_to_runs=False)
    return report, mel, w2v


def test_two_encoders_are_a_warning_at_the_top(two_encoder_report):
    report, mel, w2v = two_encoder_report
    md = report.markdown.read_text()
    top = md.split("## Setup", 1)[0]
    assert "Warning: mixed runs" in top and "2 speech encoders" in top
    assert "`mel`: 1 run(s) (faceformer)" in top
    assert "`wav2vec2: facebook/wav2vec2-base-960h (random init)`" in top


def test_the_report_names_each_runs_encoder_and_dataset_digest(two_encoder_report):
    from talkbench.datasets import load_dataset

    report, mel, w2v = two_encoder_report
    md = report.markdown.read_text()
    section = md.split("## Provenance", 1)[1].split("\n## ", 1)[0]
    digest = load_dataset("synthtalk", preset="tiny").spec.digest[:12]
    w2v_name = "| wav2vec2: facebook/wav2vec2-base-960h (random init) |"
    for result, encoder in ((mel, "| mel |"), (w2v, w2v_name)):
        line = next(x for x in section.splitlines() if x.startswith(f"| `{result.run_id[:8]}`"))
        assert encoder in line and f"| {digest} |" in line
        assert "not logged" not in line  # digests, preset, commit, threads and device all logged


def test_speed_section_and_plot_come_from_the_speed_profile(two_encoder_report):
    report, _, _ = two_encoder_report
    md = report.markdown.read_text()
    speed = md.split("## Size and speed", 1)[1].split("\n## ", 1)[0]
    assert "RTF" in speed and "encoder share" in speed and "%" in speed
    assert "× real time (test split)" in speed and "× |" in speed  # the older whole-split speed too
    assert "![speed against quality](figures/speed_quality.png)" in speed
    assert (report.out_dir / "figures" / "speed_quality.png").stat().st_size > 1000


def test_rank_stability_section_gives_first_place_probabilities(two_encoder_report):
    report, _, _ = two_encoder_report
    section = report.markdown.read_text().split("## Rank stability", 1)[1].split("\n## ", 1)[0]
    assert "P(first)" in section and "no two datasets or dataset versions" in section
    probs = [float(x.split("|")[2].strip(" %")) for x in section.splitlines() if x.startswith("| faceformer")]
    assert len(probs) == 2 and sum(probs) == pytest.approx(100.0, abs=0.2)
