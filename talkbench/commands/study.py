"""`bench study make|serve|export|analyze`: perceptual 2AFC studies."""

from __future__ import annotations

from pathlib import Path

import typer

from talkbench.commands import one_line_command

study_app = typer.Typer(help="Perceptual user studies (2AFC or MOS / Likert ratings).", no_args_is_help=True)


@study_app.command("make")
@one_line_command
def make(
    runs: list[str] = typer.Option(..., "--runs", help="Run ids to compare (repeat --runs, at least two)."),
    out: Path = typer.Option(..., "--out", help="Study folder to create."),
    clips: int = typer.Option(10, "--clips", help="Test clips per method pair."),
    seed: int = typer.Option(0, "--seed", help="Seed for clip choice, left/right sides and trial order."),
    criteria: str | None = typer.Option(
        None,
        "--criteria",
        help="Comma-separated. 2AFC: lipsync,realism,style (default lipsync,realism); ratings: "
        "lip-sync,naturalness,realism,style (default lip-sync,naturalness).",
    ),
    scale: str = typer.Option(
        "2afc", "--scale", help="2afc (left or right), mos (1-5 per criterion) or likert (1-7)."
    ),
    repeats: int = typer.Option(
        2, "--repeats", help="Rating studies: trials shown twice (consistency check)."
    ),
    instructed: int = typer.Option(
        1, "--instructed", help="Rating studies: instructed-response trials (attention check)."
    ),
    reference: bool = typer.Option(
        False, "--reference", help="Show the speaker's ground truth; ask about style."
    ),
    size: int = typer.Option(384, "--size", help="Panel size in pixels."),
    viewer: bool = typer.Option(
        False, "--viewer", help="Show each trial in the 3D viewer (orbit, scrub) instead of an MP4."
    ),
    samples: int = typer.Option(
        1,
        "--samples",
        help="Runs of methods that sample show one of their first N samples per clip "
        "(seeded by --seed; recorded per trial with its seed); 1: sample 0.",
    ),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri"),
) -> None:
    """Render side-by-side trials (or one face per trial to rate) of saved test predictions and
    write the manifest."""
    from talkbench.study.make import make_study_from_runs

    criteria = criteria or ("lipsync,realism" if scale == "2afc" else "lipsync,naturalness")
    path = make_study_from_runs(
        runs,
        out,
        clips,
        seed,
        tuple(c.strip() for c in criteria.split(",") if c.strip()),
        reference,
        size,
        tracking_uri,
        viewer,
        samples,
        scale,
        repeats,
        instructed,
    )
    typer.echo(f"study written to {path}; serve it with: bench study serve {path}")


@study_app.command("serve")
@one_line_command
def serve(
    study_dir: Path = typer.Argument(..., help="A folder made by `bench study make`."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (loopback by default)."),
    port: int = typer.Option(8000, "--port"),
    allow_host: list[str] = typer.Option(
        [],
        "--allow-host",
        help="Another host name raters reach the server by (repeatable; loopback names and --host "
        "are always allowed). Requests naming any other host are refused (DNS rebinding).",
    ),
) -> None:
    """Serve the study page; every answer is stored in <study>/answers.db as it is given."""
    from talkbench.hosts import WILDCARDS, allowed_hosts
    from talkbench.study.app import create_app

    hosts = allowed_hosts(host, allow_host)
    app = create_app(study_dir, hosts)
    typer.echo(f"serving {study_dir} on http://{host}:{port}/?rater=<id>  (Ctrl-C to stop)")
    if host in WILDCARDS and not allow_host:
        typer.echo(
            "note: only requests addressed to a loopback name are answered; "
            "name the host raters use with --allow-host"
        )
    app.run(host=host, port=port, threaded=True, use_reloader=False)


@study_app.command("export")
@one_line_command
def export(
    study_dir: Path = typer.Argument(...),
    out: Path | None = typer.Option(None, "--out", help="CSV path (default: <study>/answers.csv)."),
) -> None:
    """Export the answers joined with the manifest to CSV."""
    from talkbench.errors import TalkbenchError
    from talkbench.study.app import load_manifest
    from talkbench.study.store import AnswerStore

    if not (study_dir / "answers.db").is_file():
        raise TalkbenchError(f"{study_dir}: no answers.db yet (serve the study with `bench study serve`)")
    path = AnswerStore(study_dir / "answers.db").export_csv(
        load_manifest(study_dir), out or study_dir / "answers.csv"
    )
    typer.echo(f"answers exported to {path}")


@study_app.command("analyze")
@one_line_command
def analyze(
    source: Path = typer.Argument(..., help="A study folder or an exported answers CSV."),
    out: Path | None = typer.Option(
        None, "--out", help="Folder for the table and plot (default: next to source)."
    ),
    min_catch: float = typer.Option(
        0.75, "--min-catch", help="Share of catch trials a rater must get right."
    ),
    log: bool = typer.Option(
        True, "--log/--no-log", help="Log the analysis to the MLflow 'user-study' experiment."
    ),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri"),
    metrics: str = typer.Option(
        "lve,lve_dtw,lip_open_err,lip_open_dtw,mve,fdd,lip_corr",
        "--metrics",
        help="Objective metrics to correlate with the preferences per clip (a study made from runs).",
    ),
    max_repeat_diff: float = typer.Option(
        1.0, "--max-repeat-diff", help="Rating studies: mean points a rater's repeated trials may differ."
    ),
) -> None:
    """Preference rates, binomial tests, Wilson CIs, Holm correction, Bradley-Terry scores (2AFC), or
    MOS per method and criterion with bootstrap CIs (ratings); and the Spearman correlation of each
    metric with the preferences or ratings per clip."""
    from talkbench.study.analysis import analyze as run_analysis
    from talkbench.study.analysis import load_answers, plot_preferences

    answers = load_answers(source)
    out = out or (source if source.is_dir() else source.parent) / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    names = [m.strip() for m in metrics.split(",") if m.strip()]
    if "method" in answers and answers["method"].notna().any():
        result = _report_ratings(answers, out, max_repeat_diff)
        _echo_agreement(_metric_agreement(source, result, names, tracking_uri, rating=True), out, "rating")
        _log(log, result, out, source, tracking_uri)
        return
    result = run_analysis(answers, min_catch)
    pairs = result["pairs"]
    pairs.to_csv(out / "pairs.csv", index=False)
    plot_preferences(pairs, out / "preferences.png")
    typer.echo(
        f"raters: {result['n_raters']} ({len(result['excluded_raters'])} excluded by catch trials: "
        f"{', '.join(result['excluded_raters']) or 'none'}); answers analysed: {result['n_answers']}"
    )
    shown = pairs.assign(
        rate=pairs["rate"].map("{:.3f}".format),
        ci=[f"[{lo:.3f}, {hi:.3f}]" for lo, hi in zip(pairs["ci_low"], pairs["ci_high"])],
        p_value=pairs["p_value"].map("{:.3g}".format),
        p_holm=pairs["p_holm"].map("{:.3g}".format),
    )
    typer.echo(
        shown[
            ["criterion", "method_a", "method_b", "wins_a", "n", "rate", "ci", "p_value", "p_holm"]
        ].to_markdown(index=False)
    )
    for criterion, scores in result["bradley_terry"].items():
        ranked = ", ".join(f"{m} {s:+.2f}" for m, s in sorted(scores.items(), key=lambda kv: -kv[1]))
        typer.echo(f"Bradley-Terry ({criterion}): {ranked}")
    agreement = _metric_agreement(source, result, names, tracking_uri)
    _echo_agreement(agreement, out, "preference")
    _log(log, result, out, source, tracking_uri)


def _report_ratings(answers, out: Path, max_repeat_diff: float) -> dict:
    from talkbench.study.ratings import analyze_ratings, plot_mos

    result = analyze_ratings(answers, max_repeat_diff)
    mos = result["mos"]
    mos.to_csv(out / "mos.csv", index=False)
    plot_mos(mos, out / "mos.png")
    reasons = result["exclusion_reasons"]
    typer.echo(
        f"raters: {result['n_raters']} ({len(reasons)} excluded by attention checks: "
        f"{', '.join(f'{r} ({why})' for r, why in sorted(reasons.items())) or 'none'}); "
        f"ratings analysed: {result['n_answers']}"
    )
    typer.echo(
        mos.assign(
            mos=mos["mos"].map("{:.2f}".format),
            ci=[f"[{lo:.2f}, {hi:.2f}]" for lo, hi in zip(mos["ci_low"], mos["ci_high"])],
        )[["criterion", "method", "mos", "ci", "n", "raters", "clips"]].to_markdown(index=False)
    )
    return result


def _echo_agreement(agreement, out: Path, what: str) -> None:
    if agreement is not None:
        agreement.to_csv(out / "metric_agreement.csv", index=False)
        typer.echo(f"Spearman rho between each metric's per-clip advantage and the {what} (95 % CI):")
        typer.echo(
            agreement.assign(
                rho=agreement["rho"].map("{:+.2f}".format),
                ci=[f"[{lo:+.2f}, {hi:+.2f}]" for lo, hi in zip(agreement["ci_low"], agreement["ci_high"])],
            )[["criterion", "metric", "rho", "ci", "n_items"]].to_markdown(index=False)
        )


def _log(log: bool, result: dict, out: Path, source: Path, tracking_uri: str | None) -> None:
    if log:
        from talkbench.study.record import log_study

        run_id = log_study(result, out, source, tracking_uri)
        typer.echo(f"logged to MLflow experiment 'user-study', run {run_id}")


def _metric_agreement(
    source: Path, result: dict, metrics: list[str], tracking_uri: str | None, rating: bool = False
):
    """The per-clip metric/preference (or metric/rating) correlations of a study folder whose
    manifest names its runs (``bench study make --runs``); None for a CSV or a study of other
    predictions."""
    import json

    from talkbench.contract import PER_SEQUENCE_ARTIFACT
    from talkbench.metrics.registry import metric_info
    from talkbench.study.correlation import clip_preferences, clip_ratings, metric_agreement, rating_agreement
    from talkbench.tracking import Tracker

    manifest = source / "manifest.json"
    runs = json.loads(manifest.read_text()).get("runs") if source.is_dir() and manifest.is_file() else None
    if not runs:
        return None
    for m in metrics:
        metric_info(m)  # an unknown name: one clear error with suggestions
    import pandas as pd

    tracker = Tracker(tracking_uri, create=False)
    tables = {
        label: pd.read_csv(tracker.download_artifacts(run_id, PER_SEQUENCE_ARTIFACT))
        for label, run_id in runs.items()
    }
    if rating:
        return rating_agreement(clip_ratings(result["kept"]), tables, metrics)
    return metric_agreement(clip_preferences(result["kept"]), tables, metrics)


@study_app.command("power")
@one_line_command
def power(
    rate: float = typer.Option(..., "--rate", help="True preference rate to detect (e.g. 0.6 vs 0.5)."),
    target: float = typer.Option(0.8, "--power", help="Wanted power of the two-sided binomial test."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level (before --comparisons)."),
    trials_per_rater: int = typer.Option(20, "--trials-per-rater", help="Answers each rater gives."),
    comparisons: int = typer.Option(1, "--comparisons", help="Method pairs x criteria tested (Bonferroni)."),
    icc: float = typer.Option(0.0, "--icc", help="Correlation of one rater's answers (design effect)."),
    exclusion: float = typer.Option(0.0, "--exclusion", help="Share of raters catch trials remove."),
) -> None:
    """Raters and answers needed to detect a preference rate at a given power (exact binomial)."""
    from talkbench.study.power import study_size

    size = study_size(rate, target, alpha, trials_per_rater, comparisons, icc, exclusion)
    typer.echo(
        f"answers per comparison: {size.answers} (exact power {size.power:.3f} at alpha {size.alpha:.3g})"
        + (f"; {size.answers_with_icc} with the design effect of icc {icc}" if icc else "")
    )
    typer.echo(
        f"raters: {size.raters} at {trials_per_rater} answers each"
        + (f", recruiting for {100 * exclusion:.0f} % excluded by catch trials" if exclusion else "")
    )


def register(app: typer.Typer) -> None:
    app.add_typer(study_app, name="study")
