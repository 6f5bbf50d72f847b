"""A run directory's record (``run.json``): what MLflow cannot know about a run, kept for resuming.

MLflow's run status is the one record of how a run stands (RUNNING, FINISHED, FAILED, KILLED); the
record keeps only the store the run lives in, so ``bench run --resume`` finds it from any directory
(the config and checkpoints sit beside it, at :mod:`talkbench.paths`' fixed places). ``--resume last``
asks those stores for the newest run they say was interrupted: KILLED, which is how a run stopped by
Ctrl-C or SIGTERM ends. A run that FAILED (bad data, a bug) or is still RUNNING is not "last"; it
resumes by id, once its cause is gone.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from talkbench.errors import TalkbenchError
from talkbench.paths import RUN_RECORD, run_dir, runs_root

from .store import first_line, resolve_tracking_uri
from .tracker import Tracker

INTERRUPTED = "KILLED"  # the MLflow status of a run that was stopped and may go on


def write_run_record(run_id: str, tracking_uri: str) -> Path:
    """Write the run's record (``paths.run_dir(run_id) / RUN_RECORD``); returns the run directory."""
    d = run_dir(run_id)
    d.mkdir(parents=True, exist_ok=True)
    path = d / RUN_RECORD
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"run_id": run_id, "tracking_uri": tracking_uri}, indent=2))
    tmp.replace(path)
    return d


def read_run_record(run_id: str) -> dict:
    path = run_dir(run_id) / RUN_RECORD
    if not path.exists():
        raise TalkbenchError(
            f"--resume {run_id}: no run directory {path.parent} (runs live under {runs_root()})"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise TalkbenchError(f"--resume {run_id}: {path} is not valid JSON ({exc})") from None


def last_interrupted_run(
    resumable: Callable[[str], bool] | None = None, tracking_uri: str | None = None
) -> str:
    """Id of the newest run (by MLflow start time) with a run directory here whose store says it was
    interrupted (``--resume last``); with ``resumable``, the newest one it accepts (runs without a
    checkpoint are passed over). ``tracking_uri`` replaces the stores the records name (a moved store)."""
    stores: dict[str, list[str]] = {}
    for path in runs_root().glob(f"*/{RUN_RECORD}"):
        try:
            saved = json.loads(path.read_text()).get("tracking_uri")
        except (OSError, json.JSONDecodeError, AttributeError):
            continue
        uri = resolve_tracking_uri(tracking_uri or saved)
        stores.setdefault(uri, []).append(path.parent.name)
    interrupted: list[tuple[int, str]] = []
    others: Counter[str] = Counter()
    unread: list[str] = []
    for uri, run_ids in stores.items():
        try:
            statuses = Tracker(uri, create=False).run_statuses(run_ids)
        except TalkbenchError as exc:  # a store that is gone or not answering: its runs cannot be asked
            unread.append(f"{uri} ({first_line(exc)})")
            continue
        for run_id, (status, start) in statuses.items():
            if status == INTERRUPTED:
                interrupted.append((start, run_id))
            else:
                others[status] += 1
    for _, run_id in sorted(interrupted, reverse=True):
        if resumable is None or resumable(run_id):
            return run_id
    raise TalkbenchError(_nothing_to_resume(sum(map(len, stores.values())), len(interrupted), others, unread))


def _nothing_to_resume(n_dirs: int, n_interrupted: int, others: Counter[str], unread: list[str]) -> str:
    where = f"under {runs_root()}"
    if not n_dirs:
        return f"nothing to resume: --resume last found no run directory {where}"
    if n_interrupted:
        found = f"no resumable run ({n_interrupted} interrupted, none with a checkpoint)"
    else:
        found = f"no interrupted ({INTERRUPTED}) run"
    dirs = f"{n_dirs} run director{'y' if n_dirs == 1 else 'ies'}"
    text = f"nothing to resume: --resume last found {found} among {dirs} {where}"
    if others.get("FAILED") or others.get("RUNNING"):
        counts = ", ".join(f"{n} {status}" for status, n in sorted(others.items()) if status != "FINISHED")
        text += f" ({counts}: resume one by id, bench run --resume RUN_ID, once its cause is gone)"
    if unread:
        text += f"; stores not read: {'; '.join(unread)}"
    return text
