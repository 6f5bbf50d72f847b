"""`bench report`: a comparison report (HTML + Markdown, optional LaTeX tables) from tracked runs."""

from __future__ import annotations

from pathlib import Path

import typer

from talkbench.commands import one_line_command


@one_line_command
def report(
    dataset: str = typer.Option("synthtalk", "--dataset", help="Experiment (dataset) to report on."),
    runs: list[str] = typer.Option(None, "--runs", help="Only these run ids (repeat --runs); default: all."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default: reports/<dataset>)."),
    fmt: list[str] = typer.Option(
        None, "--format", help="html, markdown, latex (repeatable; default html+markdown)."
    ),
    metrics: str = typer.Option(
        "",
        "--metrics",
        help="Comma-separated metrics for the tables (default: LVE, MVE, FDD, style log errors, "
        "bilabial recall, vowel-open rate).",
    ),
    clips: int = typer.Option(3, "--clips", help="Test clips with mouth-opening curves and in the viewer."),
    viewer: bool = typer.Option(
        True, "--viewer/--no-viewer", help="Embed the 3D viewer of those clips (written to <out>/viewer/)."
    ),
    log: bool = typer.Option(
        True, "--log/--no-log", help="Log the report as an artifact of the runs it covers."
    ),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri"),
    compare: list[str] = typer.Option(
        None, "--compare", help="Other datasets (experiments) to rank the methods on too (repeatable)."
    ),
) -> None:
    """Leaderboard with CIs, paired tests, per-subject table, training and ablation curves, mouth opening."""
    from talkbench.errors import ConfigError
    from talkbench.reports.report import build_report

    formats = tuple(fmt or ("html", "markdown"))
    bad = [f for f in formats if f not in ("html", "markdown", "latex")]
    if bad:
        raise ConfigError(f"--format {bad[0]!r}: expected html, markdown or latex")
    if "latex" in formats and len(formats) == 1:
        formats = ("markdown", "latex")
    result = build_report(
        dataset,
        runs or None,
        out,
        formats,
        tracking_uri,
        tuple(m.strip() for m in metrics.split(",") if m.strip()) or None,
        clips,
        log,
        viewer,
        tuple(compare or ()),
    )
    for path in (result.html, result.markdown, result.latex):
        if path is not None and path.exists():
            typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
