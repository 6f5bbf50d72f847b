"""`bench run`, `bench methods` and `bench leaderboard`. Heavy imports happen inside the commands."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import typer

from talkbench.commands import one_line_errors
from talkbench.errors import TalkbenchError


def _console():
    from rich.console import Console

    console = Console(soft_wrap=False)
    if not console.is_terminal:  # pipes and logs: wide enough for every leaderboard column
        console = Console(soft_wrap=False, width=160)
    return console


def run_command(
    method: str | None = typer.Option(None, "--method", "-m", help="Method name (see `bench methods`)."),
    dataset: str | None = typer.Option(
        None,
        "--dataset",
        "-d",
        help="synthtalk (default), vocaset, biwi, ...; a,b: a mixture (--set dataset.weights=[1,2]).",
    ),
    data_root: Path | None = typer.Option(
        None, "--data-root", help="Prepared dataset directory (a mixture: one per dataset, comma separated)."
    ),
    preset: str | None = typer.Option(
        None,
        "--preset",
        "-p",
        help="Preset: paper, synthtalk, tiny, ... (default: per dataset, else 'defaults': the method's own).",
    ),
    # text, checked by the config schema: -1 or 1e20 are one `error:` line naming --seed, not a usage box
    seed: str | None = typer.Option(None, "--seed", metavar="INT", help="Training seed (0 to 2**32-1)."),
    overrides: list[str] | None = typer.Option(
        None, "--set", help="Dotted override KEY=VALUE, e.g. --set memorytalker.memory_slots=16 (repeatable)."
    ),
    config: Path | None = typer.Option(None, "--config", help="YAML config file (between preset and --set)."),
    tracking_uri: str | None = typer.Option(
        None,
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///$TALKBENCH_HOME/mlflow.db).",
    ),
    device: str | None = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
    resume: str | None = typer.Option(
        None,
        "--resume",
        help="Continue a run from its last checkpoint: a run id, or 'last' (the newest interrupted run).",
    ),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bars."),
    parent_run: str | None = typer.Option(
        None, "--parent-run", help="Nest this run under a parent MLflow run (used by `bench sweep`)."
    ),
    no_leaderboard: bool = typer.Option(False, "--no-leaderboard", help="Do not print the leaderboard."),
    register: str | None = typer.Option(
        None, "--register", help="Add the run's MLflow model to the Model Registry under this name."
    ),
) -> None:
    """Train (all stages), predict the test split, evaluate, log to MLflow, print the leaderboard."""
    with one_line_errors():
        from talkbench import pipeline
        from talkbench.errors import ConfigError

        if resume is not None:
            given = [
                o
                for o, v in (
                    ("--dataset", dataset),
                    ("--data-root", data_root),
                    ("--preset", preset),
                    ("--seed", seed),
                    ("--set", overrides),
                    ("--config", config),
                    ("--device", device),
                    ("--register", register),
                )
                if v
            ]
            if given:
                raise ConfigError(f"--resume reuses the run's saved config; drop {', '.join(given)}")
            run_id, cfg, uri = pipeline.resume_target(resume, tracking_uri)
            if method is not None and method != cfg.method:
                raise ConfigError(f"--resume {run_id}: that run is method '{cfg.method}', not '{method}'")
            with _report_interruption():
                result = pipeline.run(cfg, tracking_uri=uri, resume=run_id, progress=not no_progress)
        else:
            if method is None:
                raise ConfigError("--method is required (see `bench methods`)")
            from talkbench.config import load_config

            cfg = load_config(
                method,
                dataset=dataset,
                preset=preset,
                config_file=config,
                overrides=[*(overrides or []), *([f"eval.register={register}"] if register else [])],
                seed=seed,
                device=device,
                data_root=data_root,
            )
            with _report_interruption():
                result = pipeline.run(
                    cfg, tracking_uri=tracking_uri, progress=not no_progress, parent_run_id=parent_run
                )
        if result.rank:  # under torchrun only rank 0 reports (it logged the run)
            return
        board = None
        if not no_leaderboard:
            from talkbench.contract import mixture_members
            from talkbench.reports import leaderboard as lb

            # a mixture's run: one board per member, where it stands beside that member's own runs
            board = [
                lb.leaderboard(m, tracking_uri=result.tracking_uri, highlight=result.run_id)
                for m in mixture_members(result.experiment)
            ]
    _print_result(result, board)


@contextlib.contextmanager
def _report_interruption() -> Iterator[None]:
    """SIGINT/SIGTERM during a run: one line saying what was saved and how to resume; exit 130."""
    from talkbench.errors import Interrupted

    try:
        yield
    except Interrupted as exc:
        if exc.run_id is None:  # SIGTERM before the MLflow run existed
            line = f"interrupted ({exc.signal_name}) before the run was created; nothing was logged"
            typer.echo(line, err=True)
            raise typer.Exit(130) from None
        typer.echo(_interruption_line(exc), err=True)
        raise typer.Exit(130) from None
    except KeyboardInterrupt:  # pipeline.run turns every later one into Interrupted
        typer.echo("interrupted before the run was created; nothing was logged", err=True)
        raise typer.Exit(130) from None


def _interruption_line(exc) -> str:
    rid = exc.run_id or "last"
    head = f"interrupted ({exc.signal_name})"
    if exc.checkpoint is None:
        return f"{head}: no checkpoint saved; run {rid} is marked killed"
    # epoch None: stopped outside the engine's handler (evaluation, a second Ctrl-C); an older checkpoint
    saved = (
        f"checkpoint saved at epoch {exc.epoch}"
        if exc.epoch is not None
        else f"last checkpoint {exc.checkpoint}"
    )
    return f"{head}: {saved}; resume with: bench run --resume {rid}"


def _print_result(result, board=None) -> None:
    from talkbench.reports import leaderboard as lb

    console = _console()
    console.print(
        f"run {result.run_id} ({result.experiment}): {result.n_predictions} predictions, "
        f"{result.inference_speed:.1f} s of animation per s of compute; run dir {result.run_dir}"
    )
    for one in board or []:
        console.print(lb.to_rich(one))
    console.print(f"store: {result.tracking_uri}  (bench ui to browse it)", style="dim")


def methods_command(
    preset: str = typer.Option("tiny", "--preset", help="Preset whose stage settings are shown."),
) -> None:
    """List the registered methods with their stages and presets."""
    # Read, never built: class attributes from the source, stage settings from the presets folder (a
    # plugin's own, see config.preset_folder), so listing needs neither torch nor the methods (nor a
    # plugin's imports).
    from rich.table import Table

    from talkbench.config import available_presets
    from talkbench.registry import METHODS

    table = Table(title="Methods")
    for col in ("method", "speaker id", f"training in preset '{preset}' (epochs, sampler)", "presets"):
        table.add_column(col)
    for name in METHODS.names():
        uses = {True: "yes", False: "no"}.get(METHODS.static_attr(name, "uses_speaker_id"), "?")  # type: ignore[arg-type]
        table.add_row(name, uses, _stage_summary(name, preset), ", ".join(available_presets(name)) or "-")
    _console().print(table)


def _stage_summary(name: str, preset: str) -> str:
    """The epoch and sampler settings of a method's section in one preset file (bases merged)."""
    from talkbench.config import preset_folder, preset_layers

    path = preset_folder(name) / f"{preset}.yaml"
    if not path.is_file():
        return f"- (no preset '{preset}')"
    section: dict = {}
    try:
        for data, _ in preset_layers(path):
            if isinstance(data, dict) and isinstance(data.get(name), dict):
                section.update(data[name])
    except TalkbenchError as exc:
        return f"? ({str(exc).splitlines()[0][:80]})"
    if not section:
        return "none (learning-free)"
    items = [f"{k} {v}" for k, v in section.items() if k == "epochs" or k.endswith("_epochs")]
    if "sampler" in section:
        items.append(f"sampler {section['sampler']}")
    return ", ".join(items) or "the method's defaults"


def leaderboard_command(
    dataset: str = typer.Option("synthtalk", "--dataset", "-d", help="Dataset (MLflow experiment)."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, markdown, latex or csv."),
    metrics: list[str] | None = typer.Option(
        None, "--metrics", help="Metrics to show (repeatable or comma separated), e.g. --metrics lve,fdd."
    ),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLflow tracking URI."),
    highlight: str | None = typer.Option(None, "--highlight", help="Run id to mark."),
    columns: list[str] | None = typer.Option(
        None,
        "--columns",
        help="Column sets: quality (the metrics, default), speed (params, first-frame latency, ms per "
        "audio second, RTF, encoder share), provenance (encoder, digests, preset, commit, threads, "
        "device); comma separated, e.g. --columns quality,speed.",
    ),
) -> None:
    """The leaderboard of one dataset: seeds grouped into mean ± std, best in bold."""
    with one_line_errors():
        from talkbench.errors import ConfigError
        from talkbench.reports import leaderboard as lb

        if fmt not in lb.FORMATS:
            raise ConfigError(f"--format '{fmt}': expected one of {', '.join(lb.FORMATS)}")
        names = [m.strip() for item in metrics or [] for m in item.split(",") if m.strip()]
        board = lb.leaderboard(dataset, tracking_uri=tracking_uri, metrics=names or None, highlight=highlight)
        sets = [c.strip() for item in columns or [] for c in item.split(",") if c.strip()]
        lb.with_columns(board, sets or None)
        from talkbench.tracking import resolve_tracking_uri

        store = resolve_tracking_uri(tracking_uri)
    typer.secho(f"store: {store}", dim=True, err=fmt != "table")  # stdout stays a clean table/CSV
    if fmt == "table":
        _console().print(lb.to_rich(board))
        if not board.rows:
            typer.echo(
                f"no finished runs for dataset '{dataset}' yet (bench run --method ... --dataset {dataset})"
            )
    else:
        sys.stdout.write(lb.render(board, fmt))


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
    app.command("methods")(methods_command)
    app.command("leaderboard")(leaderboard_command)
