"""`bench view`: the interactive 3D viewer of runs' predictions of a test clip, next to the ground truth."""

from __future__ import annotations

from pathlib import Path

import typer

from talkbench.commands import one_line_command


@one_line_command
def view(
    run: list[str] = typer.Option(..., "--run", help="Run id or model URI; repeat --run to compare runs."),
    clip: list[str] = typer.Option(
        None, "--clip", help="Test clip name (repeatable); default: the first clip every run predicted."
    ),
    out: Path | None = typer.Option(None, "--out", help="Folder to write (default: views/<first clip>/)."),
    condition: str | None = typer.Option(
        None, "--condition", help="Training speaker for conditioned methods (default: their first)."
    ),
    serve: bool = typer.Option(False, "--serve", help="Serve the folder on 127.0.0.1 until Ctrl-C."),
    port: int = typer.Option(8000, "--port", help="Port for --serve (0: any free port)."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri"),
) -> None:
    """3D viewer: runs' predictions of a clip beside the ground truth, synced to its audio.

    Writes a self-contained folder (index.html + data) that opens from disk or is served.
    """
    from talkbench.viewer.runs import view_runs

    page = view_runs(run, out, clip or None, condition, tracking_uri)
    typer.echo(f"wrote {page}")
    if not serve:
        typer.echo(
            f"open it in a browser (it plays from disk), or serve it: "
            f"python3 -m http.server -b 127.0.0.1 -d {page.parent}"
        )
        return
    from talkbench.viewer.serve import make_server

    server = make_server(page.parent, port)
    typer.echo(f"serving {page.parent} on http://127.0.0.1:{server.server_port}/  (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def register(app: typer.Typer) -> None:
    app.command("view")(view)
