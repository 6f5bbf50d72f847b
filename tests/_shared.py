"""The folder of small real files shared with the project (../shared/data beside the checkout; CI
puts its copy there too), with the developers' fixed location as a fallback."""

from pathlib import Path

_BESIDE = Path(__file__).resolve().parents[2] / "shared"
SHARED = _BESIDE if _BESIDE.is_dir() else Path("/work/shared")
DATA = SHARED / "data"
