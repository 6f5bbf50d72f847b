"""What each run used and how fast it ran, read back from its tags, params and ``speed/*`` metrics:
the provenance and speed columns of leaderboards (``--columns provenance|speed``) and reports.

Runs logged before the ``talkbench.encoder.*`` tags existed name their encoder from the config params
(``<method>.audio.kind`` / ``name_or_path`` / ``pretrained``); their digests show as "not logged".
"""

from __future__ import annotations

import math

import pandas as pd

from talkbench.audio.config import encoder_name
from talkbench.contract import SPEED_METRIC, Tag, column, metric_column, param_column, speed_metric
from talkbench.reports.rows import Leaderboard, Row

NOT_LOGGED = "not logged"
PROVENANCE = ("encoder", "encoder digest", "dataset digest", "preset", "commit", "threads", "device")
SPEED = (
    "params (trainable/total)", "first frame (ms)", "ms per audio s", "RTF", "encoder share", "train (min)"
)  # fmt: skip
SPEED_KEYS = (
    "params_total", "params_trainable", "first_frame_ms", "ms_per_audio_s", "rtf", "encoder_share", "train_s"
)  # fmt: skip
COLUMN_SETS = ("quality", "speed", "provenance")


def _text(run: pd.Series, col: str) -> str | None:
    value = run.get(col)
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return None
    return str(value)


def encoder_of(run: pd.Series) -> str:
    """The encoder's name (audio/provenance.encoder_name), from its tag or else the run's config."""
    logged = _text(run, column(Tag.encoder("name")))
    if logged:
        return logged
    method = _text(run, column(Tag.METHOD)) or ""
    kind = _text(run, param_column(f"{method}.audio.kind"))
    if kind is None:
        return "none" if method in ("template", "mean-motion") else NOT_LOGGED
    checkpoint = _text(run, param_column(f"{method}.audio.name_or_path")) or "?"
    pretrained = _text(run, param_column(f"{method}.audio.pretrained")) != "False"
    return encoder_name(kind, checkpoint, pretrained)


def with_encoder(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with the encoder-name tag column filled for every run (from params where untagged)."""
    if runs.empty:
        return runs
    return runs.assign(**{column(Tag.encoder("name")): [encoder_of(r) for _, r in runs.iterrows()]})


def run_provenance(run: pd.Series) -> dict[str, str]:
    """One run's PROVENANCE fields as text."""
    frozen = _text(run, column(Tag.encoder("frozen_digest")))
    weights = _text(run, column(Tag.encoder("weights_digest")))
    digest = frozen if frozen and frozen != "-" else weights
    return {
        "encoder": encoder_of(run),
        "encoder digest": digest[:12] if digest else NOT_LOGGED,
        "dataset digest": (_text(run, column(Tag.DATASET_DIGEST)) or NOT_LOGGED)[:12],
        "preset": _text(run, column(Tag.PRESET)) or NOT_LOGGED,
        "commit": (_text(run, column(Tag.GIT_COMMIT)) or NOT_LOGGED)[:12],
        "threads": _text(run, column(Tag.THREADS)) or NOT_LOGGED,
        "device": _text(run, column(Tag.DEVICE)) or NOT_LOGGED,
    }


def _joined(values: list[str]) -> str:
    return " / ".join(dict.fromkeys(values))  # a row whose seeds differ shows every value


def _mean(runs: pd.DataFrame, name: str) -> float:
    col = metric_column(speed_metric(name))
    if col not in runs:
        return math.nan
    vals = runs[col].dropna().astype(float)
    return float(vals.mean()) if len(vals) else math.nan


def row_speed(runs: pd.DataFrame) -> dict[str, float]:
    """Mean over a row's runs of each logged speed metric (NaN where none logged it); runs from before
    talkbench.speed give their parameter count tag and their test-split speed (``test_split``)."""
    out = {n: _mean(runs, n) for n in SPEED_KEYS}
    total = column(Tag.params("total"))
    if not math.isfinite(out["params_total"]) and total in runs:
        counts = pd.to_numeric(runs[total], errors="coerce").dropna()
        out["params_total"] = float(counts.mean()) if len(counts) else math.nan
    speed = metric_column(SPEED_METRIC)
    out["test_split"] = float(runs[speed].dropna().mean()) if speed in runs else math.nan
    return out


def attach(board: Leaderboard, runs: pd.DataFrame) -> None:
    """Fill each row's provenance (its runs' values, distinct ones joined) and speed means."""
    by_id = runs.set_index("run_id") if "run_id" in runs else pd.DataFrame()
    for row in board.rows:
        mine = by_id.loc[[i for i in row.run_ids if i in by_id.index]]
        per_run = [run_provenance(r) for _, r in mine.iterrows()]
        row.provenance = {k: _joined([p[k] for p in per_run]) for k in PROVENANCE} if per_run else {}
        row.speed = row_speed(mine)


def _count(n: float) -> str:
    if not math.isfinite(n):
        return "–"
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{int(n):,}"


def speed_cells(row: Row) -> list[str]:
    """The SPEED cells of a row."""
    s = row.speed

    def num(v: float, fmt: str) -> str:
        return "–" if not math.isfinite(v) else format(v, fmt)

    total = s.get("params_total", math.nan)
    trainable = _count(s.get("params_trainable", math.nan))
    params = "–" if not math.isfinite(total) else f"{trainable}/{_count(total)}"
    share = s.get("encoder_share", math.nan)
    return [
        params,
        num(s.get("first_frame_ms", math.nan), ".1f"),
        num(s.get("ms_per_audio_s", math.nan), ".1f"),
        num(s.get("rtf", math.nan), ".3g"),
        "–" if not math.isfinite(share) else f"{100 * share:.0f} %",
        num(s.get("train_s", math.nan) / 60, ".1f"),
    ]


def provenance_cells(row: Row) -> list[str]:
    return [row.provenance.get(k, NOT_LOGGED) for k in PROVENANCE]


def extra_head(sets: tuple[str, ...]) -> list[str]:
    """Headers of the speed and provenance sets among ``sets``, in COLUMN_SETS order."""
    return [*(SPEED if "speed" in sets else ()), *(PROVENANCE if "provenance" in sets else ())]


def extra_cells(row: Row, sets: tuple[str, ...]) -> list[str]:
    return [
        *(speed_cells(row) if "speed" in sets else ()),
        *(provenance_cells(row) if "provenance" in sets else ()),
    ]


def notes(sets: tuple[str, ...]) -> list[str]:
    """What the speed and provenance cells mean."""
    lines = []
    if "speed" in sets:
        lines.append(
            "Speed (talkbench.speed, the same timing for every method; mean over the row's seeds): "
            "predict on 10 s of speech on the run's device and thread count; RTF = compute / audio "
            "duration (< 1: faster than real time); first frame: predict on the shortest audio prefix "
            "that gives a frame; encoder share: time inside the speech encoder; params: trainable "
            "(updated by some training stage) / total."
        )
    if "provenance" in sets:
        lines.append(
            "Provenance: the speech encoder (random init = not pretrained) and its digest (of its frozen "
            "weights where it has any, which name the checkpoint), the dataset digest, the commit; a row "
            "whose seeds differ shows every value, separated by /."
        )
    return lines
