"""The study's answer store: one SQLite file in the study folder, written as each answer arrives."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

import pandas as pd

from talkbench.errors import TalkbenchError

SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    rater TEXT NOT NULL,
    trial TEXT NOT NULL,
    criterion TEXT NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('left', 'right') OR choice GLOB '[1-9]'),  -- side or scale point
    rt_ms INTEGER,
    user_agent TEXT,
    created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (rater, trial, criterion)
);
"""


class AnswerStore:
    """Answers keyed by (rater, trial, criterion); the first answer given is the one kept."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def add(self, rater: str, trial: str, criterion: str, choice: str, rt_ms=None, user_agent=None) -> bool:
        """Store one answer; False if this rater already answered this question (kept unchanged)."""
        with self._connect() as con:
            cur = con.execute(
                "INSERT OR IGNORE INTO answers (rater, trial, criterion, choice, rt_ms, user_agent)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (rater, trial, criterion, choice, rt_ms, user_agent),
            )
            return cur.rowcount == 1

    def answered(self, rater: str) -> list[tuple[str, str]]:
        with self._connect() as con:
            rows = con.execute("SELECT trial, criterion FROM answers WHERE rater = ?", (rater,)).fetchall()
        return [tuple(r) for r in rows]

    def frame(self) -> pd.DataFrame:
        with self._connect() as con:
            return pd.read_sql_query("SELECT * FROM answers ORDER BY created, rater, trial, criterion", con)

    def export_csv(self, manifest: dict, out: str | Path) -> Path:
        """Answers joined with the manifest (which method was left/right, catch trials).

        Read straight from SQLite, not through a DataFrame: ``rt_ms`` stays an integer and a missing
        value is an empty cell (pandas would write ``100.0`` and ``nan``). Every text cell goes
        through :func:`escape_cell`, so no rater id or User-Agent is read as a spreadsheet formula.
        """
        trials = {t["id"]: t for t in manifest["trials"]}
        with self._connect() as con:
            con.row_factory = sqlite3.Row
            rows = con.execute(
                f"SELECT {', '.join(ANSWER_FIELDS)} FROM answers ORDER BY created, rater, trial, criterion"
            ).fetchall()
        unknown = sorted({r["trial"] for r in rows} - set(trials))
        if unknown:
            raise TalkbenchError(
                f"{self.path} has answers to trial(s) {', '.join(unknown[:5])} that the study's "
                "manifest.json does not list (was the manifest replaced?)"
            )
        out = Path(out)
        with out.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=EXPORT_COLUMNS)
            writer.writeheader()
            for row in rows:
                t = trials[row["trial"]]
                record = {
                    **{k: row[k] for k in ANSWER_FIELDS},
                    "left": t.get("left"),
                    "right": t.get("right"),
                    "catch": bool(t["catch"]),
                    "expected": t.get("expected"),
                    "clip": t["clip"],
                    **{k: t.get(k) for k in RATING_COLUMNS},
                }
                writer.writerow({k: _cell(v) for k, v in record.items()})
        return out


RATING_COLUMNS = ("method", "check", "repeat_of")  # rating trials: the method shown, attention check
ANSWER_FIELDS = ("rater", "trial", "criterion", "choice", "rt_ms", "user_agent", "created")
EXPORT_COLUMNS = [
    "rater",
    "trial",
    "criterion",
    "choice",
    "left",
    "right",
    "catch",
    "expected",
    "clip",
    "rt_ms",
    "user_agent",
    "created",
    *RATING_COLUMNS,
]
# OWASP CSV injection: a cell starting with one of these is a formula (or becomes one) in
# spreadsheets. A leading quote is escaped too, so that unescape_cell is exact.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_ESCAPED_START = (*FORMULA_START, "'")


def escape_cell(text: str) -> str:
    """``'`` before a text cell that starts with a formula character (or a quote)."""
    return "'" + text if text.startswith(_ESCAPED_START) else text


def unescape_cell(text: str) -> str:
    """The inverse of :func:`escape_cell`."""
    return text[1:] if text.startswith("'") and text[1:].startswith(_ESCAPED_START) else text


def _cell(value) -> str | int:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return value
    return escape_cell(str(value))
