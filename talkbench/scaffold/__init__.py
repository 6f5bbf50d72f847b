"""``bench new-method NAME``: an installable plugin package for a new method, from template/.

The package (``talkbench-NAME``, module ``talkbench_NAME``) declares the ``talkbench.methods`` entry
point, holds a working minimal method with every hook, ships the presets ``tiny`` and ``synthtalk``
in ``talkbench_NAME/presets/NAME/`` (where ``--preset`` finds them) and a test running the conformance
kit, so that ``pip install -e DIR`` makes it appear in ``bench methods`` and run as it is.
"""

from __future__ import annotations

import re
import string
from pathlib import Path

from talkbench.errors import ConfigError

TEMPLATE = Path(__file__).resolve().parent / "template"
NAME_RULE = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")


def plugin_files(name: str) -> dict[str, str]:
    """Relative path -> text of every file of the package for method ``name``."""
    package = "talkbench_" + name.replace("-", "_")
    values = {
        "name": name,
        "package": package,
        "distribution": "talkbench-" + name,
        "class_name": "".join(part.capitalize() for part in name.split("-")),
    }
    layout = {
        "pyproject.toml": "pyproject.toml",
        "README.md": "README.md",
        f"{package}/__init__.py": "__init__.py",
        f"{package}/method.py": "method.py",
        f"{package}/presets/{name}/tiny.yaml": "tiny.yaml",
        f"{package}/presets/{name}/synthtalk.yaml": "synthtalk.yaml",
        "tests/conftest.py": "conftest.py",
        f"tests/test_{package}.py": "test_method.py",
    }
    return {
        path: string.Template((TEMPLATE / f"{source}.tmpl").read_text()).substitute(values)
        for path, source in layout.items()
    }


def check_name(name: str) -> None:
    from talkbench.config.schema import _TOP_LEVEL
    from talkbench.registry import METHODS

    if not NAME_RULE.fullmatch(name):
        raise ConfigError(
            f"method name '{name}': expected lower-case letters and digits, words joined by '-' "
            "(e.g. gru-lite)"
        )
    if name in _TOP_LEVEL:
        raise ConfigError(f"method name '{name}' clashes with the config section '{name}'")
    if name in METHODS:
        raise ConfigError(f"method name '{name}' is taken (bench methods lists it); choose another")


def write_plugin(name: str, out: str | Path) -> list[Path]:
    """Write the package for method ``name`` into the folder ``out`` (new or empty); returns the files."""
    check_name(name)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out}: exists and is not an empty folder; nothing was written")
    written = []
    for rel, text in plugin_files(name).items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
