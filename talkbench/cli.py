"""The `bench` command. Thin: each command group lives in talkbench/commands/ and calls the library.

The root group is lazy: `bench --help` lists the commands from the static table below, and a command
module (with whatever it imports) is imported only when one of its commands runs, so commands that
neither train nor predict never pay for torch or the methods.
"""

from __future__ import annotations

import importlib
import sys

import typer
from typer.core import TyperCommand, TyperGroup

from talkbench.errors import TalkbenchError

# each module defines register(app) and adds its commands or sub-apps
COMMAND_MODULES = (
    "data", "run", "eval", "sweep", "report", "render", "view", "study", "pretrain", "ui", "animate",
    "import_", "export", "new_method",
)  # fmt: skip

# command name -> (module in COMMAND_MODULES, first line of its help), in the order `bench --help` lists
# them; tests/test_cli_lazy.py checks it against what the modules register. A module of COMMAND_MODULES
# missing here is imported when the group is built (correct, only slower).
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "Train (all stages), predict the test split, evaluate, log to MLflow, print the board."),
    "methods": ("run", "List the registered methods with their stages and presets."),
    "leaderboard": ("run", "The leaderboard of one dataset: seeds grouped into mean ± std, best in bold."),
    "eval": ("eval", "Score predicted vertex sequences against a dataset split."),
    "sweep": ("sweep", "Run the grid (skipping points that already have a finished run)."),
    "report": ("report", "Comparison report: leaderboard with CIs, paired tests, curves, mouth opening."),
    "render": ("render", "Render predictions saved by tracked runs, muxed with the clip's audio."),
    "view": ("view", "3D viewer: runs' predictions of a clip beside the ground truth, synced to its audio."),
    "pretrain-encoder": ("pretrain", "Pretrain the SynthTalk encoder on held-apart speakers (or reuse it)."),
    "ui": ("ui", "Open the MLflow UI on the tracking store (loopback only); Ctrl-C stops it."),
    "animate": ("animate", "Animate a WAV with a trained model: vertices as .npy and an MP4 with the audio."),
    "import": ("import_", "Load an official checkpoint and log it as an imported run."),
    "export": ("export", "Export a trained model as a Hugging Face-style folder with a model card."),
    "data": ("data", "Make, convert and check datasets."),
    "study": ("study", "Perceptual user studies (two-alternative forced choice)."),
    "new-method": ("new_method", "Write an installable plugin package for a new method."),
}


def module_commands(module: str) -> dict:
    """The click commands that one command module registers (imports the module)."""
    sub = typer.Typer()
    importlib.import_module(f"talkbench.commands.{module}").register(sub)
    return dict(typer.main.get_group(sub).commands)


class _Placeholder(TyperCommand):
    """Stands for a command in listings (name and help); replaced by the real one when it runs."""

    def __init__(self, name: str, module: str, help: str):
        super().__init__(name=name, help=help)
        self.module = module


class LazyGroup(TyperGroup):
    """A root group whose command modules are imported only when one of their commands is resolved."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        listed = {module for module, _ in COMMANDS.values()}
        for name, (module, help) in COMMANDS.items():
            if module in COMMAND_MODULES:
                self.commands.setdefault(name, _Placeholder(name, module, help))
        for module in COMMAND_MODULES:
            if module not in listed:
                for name, cmd in module_commands(module).items():
                    self.commands.setdefault(name, cmd)

    def _load(self, placeholder: _Placeholder):
        for name, cmd in module_commands(placeholder.module).items():
            if isinstance(self.commands.get(name), _Placeholder) or name not in self.commands:
                self.commands[name] = cmd
        return self.commands[placeholder.name]

    def resolve_command(self, ctx, args):
        name, cmd, rest = super().resolve_command(ctx, args)
        if isinstance(cmd, _Placeholder):
            cmd = self._load(cmd)
        return name, cmd, rest


app = typer.Typer(
    name="bench",
    cls=LazyGroup,
    help="talkbench: train, evaluate and compare speech-driven 3D facial animation methods.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"talkbench {version('talkbench')}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """talkbench: train, evaluate and compare speech-driven 3D facial animation methods."""


def main() -> None:
    try:
        app()
    except TalkbenchError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)


if __name__ == "__main__":
    main()
