"""Leaderboards from tracked runs: seeds grouped into mean +/- std, arrows, best in bold.

With the runs' per-sequence tables (``reports.evidence.attach``, done by ``leaderboard()``), each
cell also carries a 95 % CI over seeds and clips, and a value is bold only where it is
significantly best: the paired comparison with the runner-up has a 95 % CI that excludes 0. Without
them, or where one seed or fewer than 8 clips cannot support a claim, nothing is bold.

Runs that differ only by seed share ``talkbench.config_hash`` (the engine's hash of the resolved
config without the seed) and form one row; when one seed was run twice the newest run counts.
Values are shown divided by the table scale (the run's ``talkbench.scale.<metric>`` tag, logged from
the dataset spec, else the metric registry), so "1.234" under "LVE (x10^-5)" means 1.234e-5.
The reference methods ``template`` and ``mean-motion`` are floor lines, listed after the others.

A dataset's board also lists the runs trained on a mixture that has it as a member (the experiment
``a+b``, datasets/mixture.py), scored by their ``test/<dataset>/<metric>``; their label says what
they trained on (``faceformer (trained on a×1 + b×2)``), so they are never mistaken for, nor grouped
with, a model trained on the dataset alone.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math

import pandas as pd

from talkbench.contract import (
    HEADLINE_METRICS,
    IMPORTED_OFFICIAL,
    Tag,
    column,
    metric_column,
    param_column,
    test_metric,
)
from talkbench.errors import ConfigError
from talkbench.reports import evidence as ev
from talkbench.reports import provenance as prov
from talkbench.reports.rows import Leaderboard, MetricColumn, Row, metric_title

FLOORS = ("template", "mean-motion")
DEFAULT_METRICS = HEADLINE_METRICS
FORMATS = ("table", "markdown", "latex", "csv")
_TEST_COLUMN = metric_column(test_metric(""))  # "metrics.test/"
_PARAM_COLUMN = param_column("")  # "params."
_METRIC_COLUMN = metric_column("")  # "metrics."
_SEED_PARAM = param_column("seed")
_LATEX_ARROWS = {"lower": r"$\downarrow$", "higher": r"$\uparrow$", "zero": r"$\to 0$"}


# -- building -----------------------------------------------------------------------------------
def _metric_column(name: str, dataset: str, runs: pd.DataFrame) -> MetricColumn:
    from talkbench.metrics.registry import metric_info

    info = metric_info(name)  # unknown name -> ConfigError with did-you-mean
    scale = None
    for key in dict.fromkeys((name, info.scale_key or name)):  # MEE and CE share LVE's scale
        tag = column(Tag.scale(key))
        if scale is None and tag in runs.columns:
            logged = runs[tag].dropna()
            if len(logged):
                scale = float(logged.iloc[0])
    if scale is None:
        scale = info.scale_for(dataset)
    return MetricColumn(name, info.direction, scale, info.unit)


def _text(value) -> str:
    """A cell as text; '' for a missing one (NaN where runs of several kinds were concatenated)."""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _is_imported(run: pd.Series) -> bool:
    return run.get(column(Tag.IMPORTED)) == IMPORTED_OFFICIAL


def _group_key(run: pd.Series) -> str:
    value = run.get(column(Tag.CONFIG_HASH))
    if isinstance(value, str) and value:
        # an official checkpoint never shares a row with trained runs of the same config
        return f"{IMPORTED_OFFICIAL}-{value}" if _is_imported(run) else value
    # runs without the tag (not logged by the pipeline): hash the params without the seed
    items = sorted(
        (k, str(v))
        for k, v in run.items()
        if k.startswith(_PARAM_COLUMN) and k != _SEED_PARAM and pd.notna(v)
    )
    return "p" + hashlib.sha256(repr(items).encode()).hexdigest()[:15]


def build(
    runs: pd.DataFrame,
    dataset: str,
    metrics: list[str] | tuple[str, ...] | None = None,
    highlight: str | None = None,
) -> Leaderboard:
    """Group finished runs (a ``search_runs`` DataFrame) into leaderboard rows."""
    if metrics:
        for m in metrics:  # validate every requested name before anything else
            _metric_column(m, dataset, pd.DataFrame())
    present = [c.removeprefix(_TEST_COLUMN) for c in runs.columns if c.startswith(_TEST_COLUMN)]
    if not metrics:
        from talkbench.metrics.registry import METRIC_ORDER

        metrics = [m for m in DEFAULT_METRICS if m in present] or [m for m in METRIC_ORDER if m in present]
        metrics += sample_columns(present)
    columns = [_metric_column(m, dataset, runs) for m in metrics]
    board = Leaderboard(dataset, columns)
    method_col = column(Tag.METHOD)
    if runs.empty or method_col not in runs.columns:
        return board

    metric_cols = [metric_column(test_metric(c.name)) for c in columns]
    metric_cols = [c for c in metric_cols if c in runs]
    runs = runs[runs[method_col].notna()]
    if "status" in runs.columns:
        runs = runs[runs["status"] == "FINISHED"]
    if metric_cols:
        runs = runs[runs[metric_cols].notna().any(axis=1)]  # e.g. sweep parents carry no metrics
    else:
        runs = runs.iloc[0:0]
    # one contiguous copy: MLflow's frame is built a column at a time, and every assign on it warned
    runs = runs.copy().assign(_group=[_group_key(r) for _, r in runs.iterrows()])
    if "start_time" in runs.columns:
        runs = runs.sort_values("start_time", ascending=False)

    for key, group in runs.groupby("_group", sort=False):
        seed_col = group.get(column(Tag.SEED), group.get(_SEED_PARAM))
        if seed_col is not None:
            group = group.assign(_seed=seed_col.astype(str)).drop_duplicates("_seed", keep="first")
        values = {}
        for col in columns:
            name = metric_column(test_metric(col.name))
            if name not in group:
                continue
            vals = group[name].dropna().astype(float)
            if len(vals):
                std = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
                values[col.name] = (float(vals.mean()), std, len(vals))
        first = group.iloc[0]
        method = str(first[method_col])
        single = first.get(column(Tag.SAMPLES)) == "1"
        if single:
            _single_sample(values, columns)
        board.rows.append(
            Row(
                method=method,
                preset=str(first.get(column(Tag.PRESET), "") or ""),
                config_hash=str(key),
                run_ids=group["run_id"].tolist(),
                seeds=group["_seed"].tolist() if "_seed" in group else [],
                values=values,
                floor=method in FLOORS,
                imported=_is_imported(first),
                mixture=_text(first.get(column(Tag.MIXTURE))),
                highlighted=highlight is not None and highlight in group["run_id"].tolist(),
                single_sample=single,
                params={
                    k.removeprefix(_PARAM_COLUMN): str(v)
                    for k, v in first.items()
                    if k.startswith(_PARAM_COLUMN) and not pd.isna(v)  # NaN: a param this run lacks
                },
            )
        )
    _name_variants(board.rows)
    board.rows.sort(key=lambda r: (r.floor, _sort_value(board, r), r.method))
    prov.attach(board, runs)
    return board


def sample_columns(present: list[str]) -> list[str]:
    """The stochastic metrics among the logged ones, in table order: MEE, CE (by N), Diversity."""
    ces = [m for m in present if m.startswith("ce_") and _is_sample_metric(m)]
    ces.sort(key=lambda m: int(m.removeprefix("ce_n")))
    return [m for m in ("mee", *ces, "diversity", "diversity_pt3d") if m in present]


def _single_sample(values: dict[str, tuple[float, float, int]], columns: list[MetricColumn]) -> None:
    """A deterministic row's stochastic cells: MEE = CE = LVE and Diversity = 0 (N = 1, never N copies)."""
    if "lve" not in values:
        return
    mean, std, n = values["lve"]
    for c in columns:
        if _is_sample_metric(c.name) and c.name not in values:
            values[c.name] = (0.0, 0.0, n) if c.name.startswith("diversity") else (mean, std, n)


def with_columns(board: Leaderboard, sets: list[str] | tuple[str, ...] | None) -> Leaderboard:
    """Show the column sets ``sets`` (``quality``: the metrics, ``speed``, ``provenance``)."""
    chosen = tuple(dict.fromkeys(sets or ("quality",)))
    bad = [s for s in chosen if s not in prov.COLUMN_SETS]
    if bad:
        raise ConfigError(f"--columns {','.join(bad)}: expected some of {', '.join(prov.COLUMN_SETS)}")
    board.column_sets = chosen
    return board


def _shown(board: Leaderboard) -> list[MetricColumn]:
    """The metric columns renderers show (none when the quality set is left out)."""
    return board.columns if "quality" in board.column_sets else []


# what a mixture row's label says (its members, weights) or implies (one root per member)
_SHOWN_BY_MIXTURE = ("dataset.name", "dataset.weights", "dataset.root")


def mixture_runs(tracker, dataset: str):
    """Finished runs trained on a mixture with ``dataset`` among its members, as runs of ``dataset``:
    that member's metrics (``test/<dataset>/lve`` as ``test/lve``, its speed and diagnostics alike) and
    tags under the plain names, the other members' left out."""
    from talkbench.contract import mixture_members

    frames = []
    for name in tracker.experiment_names():
        members = mixture_members(name)
        if len(members) < 2 or dataset not in members:
            continue
        runs = tracker.search_runs(name)
        if runs.empty:
            continue
        rename, others = {}, []
        for c in runs.columns:
            if c.startswith(_METRIC_COLUMN):  # metrics.<head>/<member>/<rest>
                head, _, rest = c[len(_METRIC_COLUMN) :].partition("/")
                owner, _, key = rest.partition("/")
                if owner == dataset and key:
                    rename[c] = f"{_METRIC_COLUMN}{head}/{key}"
                elif owner in members and key:
                    others.append(c)
            elif c.startswith(column("")) and c.endswith(f"/{dataset}"):  # tags.<tag>/<member>
                rename[c] = c[: -len(dataset) - 1]
        frames.append(runs.drop(columns=others).rename(columns=rename))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def runs_with_mixtures(tracker, dataset: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """A dataset's finished runs and those trained on a mixture with it as a member (``mixture_runs``),
    and the member to read each mixture run's artifacts under (run id -> ``dataset``)."""
    runs = tracker.search_runs(dataset)
    mixed = mixture_runs(tracker, dataset)
    if mixed.empty:
        return runs, {}
    runs = mixed if runs.empty else pd.concat([runs, mixed], ignore_index=True)
    return runs, dict.fromkeys(mixed["run_id"], dataset)


def _name_variants(rows: list[Row]) -> None:
    """Rows of one method that differ in config get the differing settings as their variant name."""
    by_method: dict[str, list[Row]] = {}
    for r in rows:
        by_method.setdefault(r.method, []).append(r)
    for group in by_method.values():
        if len(group) < 2:
            continue
        shown = _SHOWN_BY_MIXTURE if any(r.mixture for r in group) else ()
        keys = sorted({k for r in group for k in r.params} - {"seed", *shown})
        differing = [k for k in keys if len({r.params.get(k) for r in group}) > 1]
        for r in group:
            r.variant = ", ".join(f"{k.split('.')[-1]}={r.params.get(k, '–')}" for k in differing[:3])


def _sort_value(board: Leaderboard, row: Row) -> float:
    if not board.columns or board.columns[0].name not in row.values:
        return math.inf
    col = board.columns[0]
    mean = row.values[col.name][0]
    return {"higher": -mean, "zero": abs(mean)}.get(col.direction, mean)


# -- rendering ----------------------------------------------------------------------------------
def cell(row: Row, col: MetricColumn, sep: str = " ± ") -> str:
    """mean ± std over seeds [95 % CI over seeds and clips]; one seed shows its value alone (no
    "± 0"), and where the data cannot support a CI the cell says why instead."""
    if col.name not in row.values:
        return "–"
    mean, std, n = row.values[col.name]

    def f(v: float) -> str:
        return f"{v / col.scale:.3f}"

    text = f(mean)
    if n > 1:
        text += f"{sep}{f(std)}"
    if row.single_sample and _is_sample_metric(col.name):
        return text + " (N = 1)"
    est = row.estimates.get(col.name)
    if est is not None:
        text += f" [{f(est.ci[0])}, {f(est.ci[1])}]" if est.ci is not None else f" (no CI: {est.reason})"
    return text


def notes(board: Leaderboard) -> list[str]:
    """What the cells mean, and which claims the data cannot support."""
    extra = prov.notes(board.column_sets)
    return (_quality_notes(board) if "quality" in board.column_sets else []) + extra


def _quality_notes(board: Leaderboard) -> list[str]:
    lines = ["Cells: mean ± std over seeds (one seed: its value alone)"]
    if board.evidence:
        lines[0] += (
            " [95 % CI over seeds and clips]. Bold: significantly best, i.e. the paired comparison "
            "with the runner-up (by clip, and by seed where both have it) has a 95 % CI that excludes 0."
        )
        weak = sorted({e.reason for r in board.rows for e in r.estimates.values() if e.reason})
        if weak:
            lines.append(
                f"No CI and no claim where the data cannot support one: {'; '.join(weak)} "
                "(at least 2 seeds and 8 clips needed)."
            )
        unresolved = [c.name for c in board.columns if c.name not in board.best_claims]
        if unresolved:
            lines.append(f"No significantly best value: {', '.join(map(metric_title, unresolved))}.")
    else:
        lines[0] += "; per-sequence tables not loaded, so no CI and nothing marked best."
    if any(r.single_sample for r in board.rows) and any(_is_sample_metric(c.name) for c in board.columns):
        lines.append(
            "(N = 1): a deterministic method, predicted once: MEE = CE = LVE and Diversity = 0 by "
            "definition, not measured."
        )
    return lines


def _is_sample_metric(name: str) -> bool:
    from talkbench.metrics.registry import is_sample_metric

    return is_sample_metric(name)


def _label(row: Row) -> str:
    return row.label


def to_markdown(board: Leaderboard) -> str:
    extra = prov.extra_head(board.column_sets)
    head = ["", "method", "preset", "seeds", *[c.header() for c in _shown(board)], *extra]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for r in board.rows:
        cells = []
        for c in _shown(board):
            text = cell(r, c)
            cells.append(f"**{text}**" if board.is_best(r, c.name) else text)
        cells += prov.extra_cells(r, board.column_sets)
        mark = "▶" if r.highlighted else ""
        lines.append("| " + " | ".join([mark, _label(r), r.preset, str(r.n_seeds), *cells]) + " |")
    lines += ["", *notes(board)]
    return "\n".join(lines) + "\n"


def _tex(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
        text = text.replace(a, b)
    return text


def to_latex(board: Leaderboard) -> str:
    extra = prov.extra_head(board.column_sets)
    cols = "lll" + "r" * (len(_shown(board)) + len(extra))
    head = [
        "Method", "Preset", "Seeds", *[c.header(_LATEX_ARROWS, latex=True) for c in _shown(board)],
        *map(_tex, extra),
    ]
    out = [
        f"% talkbench leaderboard: {board.dataset}; mean $\\pm$ std over seeds",
        rf"\begin{{tabular}}{{{cols}}}",
        r"\toprule",
        " & ".join(head) + r" \\",
        r"\midrule",
    ]
    floors_started = False
    for r in board.rows:
        if r.floor and not floors_started:
            floors_started = True
            if r is not board.rows[0]:
                out.append(r"\midrule")
        cells = []
        for c in _shown(board):
            text = cell(r, c, sep=r" $\pm$ ")
            cells.append(rf"\textbf{{{text}}}" if board.is_best(r, c.name) else text)
        cells += [_tex(x) for x in prov.extra_cells(r, board.column_sets)]
        out.append(" & ".join([_tex(_label(r)), _tex(r.preset), str(r.n_seeds), *cells]) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(out) + "\n"


def to_csv(board: Leaderboard) -> str:
    """Machine-readable: raw (unscaled) mean, std (NaN for one seed), n seeds and CI per metric."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    stats = ("mean", "std", "n", "ci_lo", "ci_hi", "n_clips")
    metric_head = [f"{c.name}_{s}" for c in _shown(board) for s in stats]
    speed_head = [f"speed_{k}" for k in prov.SPEED_KEYS] if "speed" in board.column_sets else []
    prov_head = [k.replace(" ", "_") for k in prov.PROVENANCE] if "provenance" in board.column_sets else []
    writer.writerow(
        [
            "method", "preset", "config_hash", "n_seeds", "floor", "highlighted", "run_ids", *metric_head,
            *speed_head, *prov_head,
        ]
    )
    for r in board.rows:
        vals = []
        for c in _shown(board):
            mean, std, n = r.values.get(c.name, (math.nan, math.nan, 0))
            est = r.estimates.get(c.name)
            lo, hi = est.ci if est is not None and est.ci is not None else (math.nan, math.nan)
            vals += [repr(mean), repr(std if n > 1 else math.nan), n, repr(lo), repr(hi)]
            vals.append(est.n_clips if est is not None else "")
        vals += [repr(r.speed.get(k, math.nan)) for k in prov.SPEED_KEYS] if speed_head else []
        vals += [r.provenance.get(k, prov.NOT_LOGGED) for k in prov.PROVENANCE] if prov_head else []
        writer.writerow(
            [r.method, r.preset, r.config_hash, r.n_seeds, r.floor, r.highlighted, " ".join(r.run_ids), *vals]
        )
    return buf.getvalue()


def to_rich(board: Leaderboard):
    from rich.table import Table

    table = Table(title=f"Leaderboard: {board.dataset} (mean ± std over seeds)")
    for name in ("", "method", "preset", "seeds"):
        table.add_column(name)
    for c in _shown(board):
        table.add_column(c.header(), justify="right")
    for name in prov.extra_head(board.column_sets):
        table.add_column(name, justify="right")
    floors_started = False
    for r in board.rows:
        if r.floor and not floors_started:
            floors_started = True
            if table.row_count:
                table.add_section()
        cells = []
        for c in _shown(board):
            text = cell(r, c)
            cells.append(f"[bold]{text}[/bold]" if board.is_best(r, c.name) else text)
        cells += prov.extra_cells(r, board.column_sets)
        table.add_row(
            "▶" if r.highlighted else "",
            _label(r),
            r.preset,
            str(r.n_seeds),
            *cells,
            style="green" if r.highlighted else ("dim" if r.floor else None),
        )
    table.caption = " ".join(notes(board))
    return table


def render(board: Leaderboard, fmt: str = "table", width: int | None = None) -> str:
    """The leaderboard as text in one of ``FORMATS`` (``table``: rich, rendered without colour)."""
    if fmt == "markdown":
        return to_markdown(board)
    if fmt == "latex":
        return to_latex(board)
    if fmt == "csv":
        return to_csv(board)
    if fmt == "table":
        from rich.console import Console

        console = Console(file=io.StringIO(), width=width or 160, color_system=None)
        console.print(to_rich(board))
        return console.file.getvalue()
    raise ConfigError(f"--format '{fmt}': expected one of {', '.join(FORMATS)}")


def leaderboard(
    dataset: str,
    tracking_uri: str | None = None,
    metrics: list[str] | tuple[str, ...] | None = None,
    highlight: str | None = None,
    evidence: bool = True,
) -> Leaderboard:
    """Build the leaderboard of one dataset from the tracking store (finished runs only); with
    ``evidence``, CIs and significant bests from the runs' per-sequence tables."""
    from talkbench.contract import mixture_members
    from talkbench.store_reader import open_run_reader

    parts = mixture_members(dataset)
    if len(parts) > 1:
        raise ConfigError(
            f"--dataset {dataset}: a mixture's runs are scored on each member's board "
            f"({', '.join(f'--dataset {m}' for m in parts)})"
        )
    tracker = open_run_reader(tracking_uri)  # sqlite3 on a local store: cheaper than MLflow's store
    runs, members = runs_with_mixtures(tracker, dataset)
    board = build(runs, dataset, metrics, highlight)
    if evidence:
        ev.attach(board, ev.per_sequence_tables(tracker, [i for r in board.rows for i in r.run_ids], members))
    return board
