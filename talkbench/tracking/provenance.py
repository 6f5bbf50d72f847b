"""Where a run's code came from: the git commit (and diff) and the versions of the packages it ran on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SOURCE_TREE = Path(__file__).resolve().parents[2]  # the checkout talkbench runs from (when it is one)
PACKAGES = ("talkbench", "torch", "mlflow", "numpy")  # whose versions every run is tagged with


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def git_info(cwd: Path | None = None) -> dict[str, str]:
    """Commit, dirty flag and diff of the source tree talkbench runs from ("unknown" outside git)."""
    cwd = cwd or SOURCE_TREE
    commit = _git(["rev-parse", "HEAD"], cwd)
    if commit is None:
        return {"commit": "unknown", "dirty": "unknown", "diff": ""}
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd) or ""
    dirty = bool(status.strip())
    diff = (_git(["diff", "HEAD"], cwd) or "") if dirty else ""
    return {"commit": commit.strip(), "dirty": str(dirty).lower(), "diff": diff}


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for pkg in PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out
