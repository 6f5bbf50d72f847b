"""`bench sweep`: an ablation grid as one parent MLflow run with a child run per point."""

from __future__ import annotations

import typer

from talkbench.commands import one_line_command


@one_line_command
def sweep(
    method: str = typer.Option(..., "--method", help="Registered method name."),
    grid: list[str] = typer.Option(
        None, "--grid", help="KEY=V1,V2,... (repeat for a Cartesian grid; seed=0,1 is the same as --seeds)."
    ),
    seeds: str | None = typer.Option(
        None, "--seeds", help="Seeds per point, e.g. 0,1,2 (default 0); alone: a sweep over seeds."
    ),
    dataset: str | None = typer.Option(None, "--dataset"),
    data_root: str | None = typer.Option(None, "--data-root"),
    preset: str | None = typer.Option(None, "--preset"),
    overrides: list[str] = typer.Option(None, "--set", help="Overrides shared by every point."),
    jobs: int = typer.Option(1, "--jobs", help="Points run in parallel."),
    device: str | None = typer.Option(None, "--device"),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri"),
    backend: str = typer.Option("local", "--backend", help="local (subprocesses) or ray (a Ray cluster)."),
    address: str | None = typer.Option(None, "--address", help="Ray cluster address (default: a local Ray)."),
    cpus_per_point: float = typer.Option(1.0, "--cpus-per-point", help="Ray: CPU cores each point asks for."),
    gpus_per_point: float | None = typer.Option(
        None, "--gpus-per-point", help="Ray: GPUs per point (default: 1 with --device cuda, else 0)."
    ),
    retries: int = typer.Option(2, "--retries", help="Ray: resubmissions of a point whose bench run failed."),
    fmt: str = typer.Option(
        "table", "--format", help="table (keys, status, headline metrics with CIs) or csv (every metric)."
    ),
) -> None:
    """Run the grid (skipping points that already have a finished run) and print a summary table.

    The grid's points x the seeds (--seeds alone: a sweep over seeds); the table shows each point's
    keys, status and headline metrics with CIs, the full one is --format csv and the parent run's
    sweep_summary.csv."""
    from talkbench.errors import ConfigError
    from talkbench.sweep import compact_summary, missing_points_error, plan, run

    if fmt not in ("table", "csv"):
        raise ConfigError(f"--format '{fmt}': expected table or csv")
    seed_list = None
    if seeds is not None:
        try:
            seed_list = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            raise ConfigError(f"--seeds '{seeds}': expected comma-separated integers, e.g. 0,1,2") from None
    planned = plan(method, grid or [], seed_list, dataset, preset, overrides or [], data_root, device)
    runner = None
    if backend == "ray":
        from talkbench.sweep_ray import RayBackend

        cuda = (device or "").startswith("cuda")
        gpus = gpus_per_point if gpus_per_point is not None else (1.0 if cuda else 0.0)
        runner = RayBackend(address, cpus_per_point, gpus, retries)
    elif backend != "local":
        raise ConfigError(f"--backend '{backend}': expected local or ray")
    # with csv the progress goes to stderr, so stdout is the table alone
    echo = typer.echo if fmt == "table" else (lambda line: typer.echo(line, err=True))
    table = run(planned, jobs, tracking_uri, echo=echo, backend=runner)
    if fmt == "csv":
        typer.echo(table.to_csv(index=False), nl=False)
    else:
        typer.echo(compact_summary(table, planned).to_markdown(index=False))
    error = missing_points_error(planned)
    if error is not None:
        raise error


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep)
