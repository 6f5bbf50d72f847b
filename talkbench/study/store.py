"""The study's answer store: one SQLite file in the study folder, written as each answer arrives."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

import pandas as pd

SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    rater TEXT NOT NULL,
    trial TEXT NOT NULL,
    criterion TEXT NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('left', 'right')),
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
        """Answers joined with the manifest (which method was left/right, catch trials)."""
        trials = {t["id"]: t for t in manifest["trials"]}
        df = self.frame()
        out = Path(out)
        columns = [
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
        ]
        with out.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            for row in df.to_dict("records"):
                t = trials[row["trial"]]
                writer.writerow(
                    {
                        **{
                            k: row[k]
                            for k in (
                                "rater",
                                "trial",
                                "criterion",
                                "choice",
                                "rt_ms",
                                "user_agent",
                                "created",
                            )
                        },
                        "left": t["left"],
                        "right": t["right"],
                        "catch": t["catch"],
                        "expected": t.get("expected") or "",
                        "clip": t["clip"],
                    }
                )
        return out
