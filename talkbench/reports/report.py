"""Comparison reports generated from tracked runs: one Markdown source, rendered to self-contained HTML.

Sections: a warning when runs mix commits, dataset versions or speech encoders, each run's provenance
(encoder, digests, preset, commit, threads, device), leaderboard (mean ± std over seeds,
95 % CI over seeds and clips, bold only where significantly best) of the metrics that carry each
method's claim, paired comparisons of the best method against each other over seeds and clips,
per-subject breakdown, training curves per stage, ablation curves of sweeps, the fine-tuning
data-fraction curve (reports/finetune.py), mouth-opening curves of
a few test clips, size and speed from the one timing function (talkbench.speed) with a speed/quality
plot. Where the data cannot support a claim (one seed, fewer than 8 clips) the report says so instead
of printing an interval.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from talkbench.config import canonical_key
from talkbench.contract import (
    SAMPLE_SPREAD_ARTIFACT,
    Kind,
    Tag,
    column,
    for_member,
    metric_column,
    param_column,
    test_metric,
)
from talkbench.errors import TalkbenchError
from talkbench.metrics.stats import MIN_CLIPS
from talkbench.reports import evidence as ev
from talkbench.reports import figures, finetune, stability
from talkbench.reports import leaderboard as lb
from talkbench.reports import provenance as prov
from talkbench.reports.rows import md_table

# the metrics that carry each method's claim: accuracy (LVE, MVE), upper-face dynamics (FDD),
# speaking style (articulation and upper-face log errors), lip closure and opening; next to LVE its
# timing-tolerant forms (metrics/timing.py), so a reader sees how much of the lip error is timing
REPORT_METRICS = (
    "lve",
    "lve_dtw",
    "lip_open_err",
    "lip_open_dtw",
    "mve",
    "fdd",
    "articulation_log_err",
    "upper_face_log_err",
    "bilabial_recall",
    "vowel_open_rate",
)

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1150px; margin: 2rem auto; padding: 0 1rem;
       color: #1f2328; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #d0d7de; padding: 0.3rem 0.6rem; text-align: right; }
th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) { text-align: left; }
thead { background: #f6f8fa; }
img { max-width: 100%; border: 1px solid #eee; }
code { background: #f6f8fa; padding: 0 0.2rem; }
"""


@dataclass
class Group:
    """A leaderboard row (runs that differ only by seed) under a unique label."""

    label: str
    row: lb.Row
    member: str | None = None  # a row trained on a mixture: the member (this dataset) its artifacts are under

    @property
    def newest(self) -> str:
        """The run that represents the group in per-run sections (rows list the newest first)."""
        return self.row.run_ids[0]

    @property
    def floor(self) -> bool:
        return self.row.floor


@dataclass
class Report:
    out_dir: Path
    markdown: Path
    html: Path
    latex: Path | None
    run_ids: list[str] = field(default_factory=list)


def build_report(
    dataset: str = "synthtalk",
    run_ids: list[str] | None = None,
    out_dir: str | Path | None = None,
    formats: tuple[str, ...] = ("html", "markdown"),
    tracking_uri: str | None = None,
    metrics: tuple[str, ...] | None = None,  # None: REPORT_METRICS
    n_clips: int = 3,
    log_to_runs: bool = True,
    viewer: bool = True,
    compare: tuple[str, ...] = (),  # other datasets (experiments) for the rank-stability section
) -> Report:
    from talkbench.tracking import Tracker

    tracker = Tracker(tracking_uri, create=False)  # readers never create a store
    selected, members = _select_runs(tracker, dataset, run_ids)
    runs, variants = _split_by_dataset_version(prov.with_encoder(selected))
    out = Path(out_dir or Path("reports") / dataset)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    logged = metric_column(test_metric(""))
    present = [c.removeprefix(logged) for c in runs if c.startswith(logged)]
    metrics = _present(runs, metrics or (*REPORT_METRICS, *lb.sample_columns(present)))
    board = lb.build(runs, dataset, list(metrics))
    tables = ev.per_sequence_tables(tracker, [r for row in board.rows for r in row.run_ids], members)
    ev.attach(board, tables)
    groups = _groups(board)
    per_seq = {g.label: tables.get(g.newest) for g in groups}

    md = [f"# talkbench report: {dataset}", ""]
    md += _warning_section(runs, variants)
    md += _setup_section(runs)
    md += _provenance_section(pd.concat([runs, variants]) if not variants.empty else runs, board)
    md += ["## Leaderboard", "", "Floors are reference methods.", ""]
    md += [lb.to_markdown(board), ""]
    if not variants.empty:
        md += [
            "### Runs on other versions of the dataset",
            "",
            "Not comparable with the table above (other data, e.g. another SynthTalk style coupling); "
            "the sections below cover the main version only, the ablation curves cover every version.",
            "",
            lb.to_markdown(_variant_board(tracker, runs, variants, dataset, metrics, members)),
            "",
        ]
    md += _paired_section(board, groups, tables)
    by_dataset = _boards_by_dataset(tracker, board, runs, variants, compare, metrics)
    md += stability.section(board, tables, by_dataset)
    md += _subject_section(board, per_seq)
    md += _sampling_section(tracker, runs, groups, fig_dir)
    md += _speed_section(board, groups, fig_dir)
    md += _training_section(tracker, groups, fig_dir)
    md += _ablation_section(tracker, dataset, board, fig_dir)
    md += finetune.section(board, runs, fig_dir, tracker)
    shown = _shown_clips(tracker, groups, n_clips)
    md += _mouth_section(shown, fig_dir)
    md += _viewer_section(shown, out) if viewer else []

    text = "\n".join(md) + "\n"
    md_path = out / "report.md"
    html_path = out / "report.html"
    latex_path = None
    if "markdown" in formats or "html" in formats:
        md_path.write_text(text)
    if "html" in formats:
        html_path.write_text(to_html(text, out, f"talkbench report: {dataset}"))
    if "latex" in formats:
        latex_path = out / "leaderboard.tex"
        latex_path.write_text(lb.to_latex(board))
    covered = [r for g in groups for r in g.row.run_ids] + variants["run_id"].tolist()
    if log_to_runs:
        for run_id in covered:
            for path in (md_path, html_path, latex_path):
                if path is not None and path.exists():
                    tracker.log_artifact(run_id, path, f"reports/{out.name}")
    return Report(out, md_path, html_path, latex_path, covered)


# -- data --------------------------------------------------------------------------------------
def _select_runs(tracker, dataset: str, run_ids: list[str] | None) -> tuple[pd.DataFrame, dict[str, str]]:
    """The dataset's finished runs (those trained on a mixture with it as a member too, scored on it),
    and run id -> member for the mixture runs."""
    runs, members = lb.runs_with_mixtures(tracker, dataset)
    if run_ids:
        for run_id in run_ids:
            tracker.get_run(run_id)  # a run that does not exist -> clear error
        runs = runs[runs["run_id"].isin(run_ids)] if not runs.empty else runs
        if len(runs) < len(set(run_ids)):
            missing = sorted(set(run_ids) - set(runs.get("run_id", [])))
            raise TalkbenchError(f"run(s) {', '.join(missing)} are not finished runs of dataset '{dataset}'")
    kind = column(Tag.KIND)
    if not runs.empty and kind in runs:
        runs = runs[runs[kind].fillna("") != Kind.SWEEP]
    if runs.empty:
        raise TalkbenchError(
            f"experiment '{dataset}' has no finished runs in '{tracker.uri}'; run `bench run` first"
        )
    return runs, members


def _split_by_dataset_version(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Runs on the dataset version most runs used, and the rest (paired tests need the same data)."""
    col = column(Tag.DATASET_DIGEST)
    if col not in runs or runs[col].nunique(dropna=True) < 2:
        return runs, runs.iloc[0:0]
    main = runs[col].value_counts().idxmax()
    return runs[runs[col] == main], runs[runs[col] != main]


def _variant_board(tracker, runs, variants, dataset, metrics, members) -> lb.Leaderboard:
    """The other versions' rows, named against every run (so the differing dataset settings show),
    with their own CIs and significance among themselves."""
    both = lb.build(pd.concat([runs, variants]), dataset, list(metrics))
    keep = set(variants["run_id"])
    both.rows = [r for r in both.rows if keep & set(r.run_ids)]
    ev.attach(both, ev.per_sequence_tables(tracker, [i for r in both.rows for i in r.run_ids], members))
    return both


def _boards_by_dataset(tracker, board, runs, variants, compare, metrics) -> dict[str, lb.Leaderboard]:
    """The main table, each other version of the dataset, and each ``compare`` dataset's table."""
    dataset = board.dataset
    if variants.empty:
        boards = {dataset: board}
    else:
        boards = {stability.version_label(runs, variants, dataset): board}
        col = column(Tag.DATASET_DIGEST)
        for _, part in variants.groupby(col):
            label = stability.version_label(part, runs, dataset)
            boards[label] = lb.build(part, dataset, list(metrics))
    for other in compare:
        found = tracker.search_runs(other)
        if found.empty:
            raise TalkbenchError(
                f"--compare {other}: experiment '{other}' has no finished runs in '{tracker.uri}'"
            )
        boards[other] = lb.build(found, other, list(metrics))
    return boards


def _groups(board: lb.Leaderboard) -> list[Group]:
    labels = [r.label.removesuffix(" (floor)") for r in board.rows]
    return [
        Group(label if labels.count(label) == 1 else f"{label} [{r.config_hash[:6]}]", r,
              board.dataset if r.mixture else None)
        for label, r in zip(labels, board.rows)
    ]


def _present(runs: pd.DataFrame, metrics: tuple[str, ...]) -> tuple[str, ...]:
    """The requested metrics some run logged (bilabial recall needs alignments, for one)."""
    have = [
        m
        for m in metrics
        if metric_column(test_metric(m)) in runs and runs[metric_column(test_metric(m))].notna().any()
    ]
    return tuple(have) or tuple(metrics)


def _column_format(values) -> Callable[[float], str]:
    """One fixed-decimal format for a whole column: 4 significant digits on its largest value."""
    finite = [abs(float(v)) for v in values if v is not None and np.isfinite(v)]
    top = max(finite, default=0.0)
    decimals = 3 if top == 0 else int(min(8, max(0, 3 - np.floor(np.log10(top)))))
    return lambda v: "–" if v is None or not np.isfinite(v) else f"{float(v):.{decimals}f}"


# -- sections ----------------------------------------------------------------------------------
def _warning_section(runs: pd.DataFrame, variants: pd.DataFrame) -> list[str]:
    """A warning block when the runs come from several commits or several dataset versions."""
    every = pd.concat([runs, variants]) if not variants.empty else runs
    method = column(Tag.METHOD)
    lines = []
    for key, what, width in (
        (Tag.GIT_COMMIT, "commit", 12),
        (Tag.DATASET_DIGEST, "dataset version", 12),
        (Tag.encoder("name"), "speech encoder", None),  # filled from params for untagged runs (with_encoder)
    ):
        col = column(key)
        if col not in every or every[col].nunique(dropna=True) < 2:
            continue
        lines.append(f"> - {every[col].nunique()} {what}s:")
        for value, part in every.groupby(col):
            methods = ", ".join(sorted(part[method].dropna().astype(str).unique())) if method in part else ""
            lines.append(f">   - `{str(value)[:width]}`: {len(part)} run(s) ({methods})")
    if not lines:
        return []
    return [
        "> **Warning: mixed runs.** Numbers below come from different code, data or speech encoders; "
        "differences between rows may be the code's, the data's or the encoder's, not the method's.",
        ">",
        *lines,
        "",
    ]


def _setup_section(runs: pd.DataFrame) -> list[str]:
    def tag(key):
        col = column(key)
        return sorted(runs[col].dropna().astype(str).unique()) if col in runs else []

    lines = ["## Setup", ""]
    lines.append(f"- runs: {len(runs)}; methods: {', '.join(tag(Tag.METHOD)) or 'n/a'}")
    shown = {
        "region_digest": Tag.REGION_DIGEST,
        "dataset_digest": Tag.DATASET_DIGEST,
        "device": Tag.DEVICE,
        "git_commit": Tag.GIT_COMMIT,
    }
    for name, key in shown.items():
        values = tag(key)
        if values:
            lines.append(f"- {name.replace('_', ' ')}: {', '.join(f'`{v}`' for v in values)}")
    lines += [
        "- LVE: per frame the max over lip vertices of the squared L2 error, mean over all pooled frames; "
        "FDD: per sequence std over time of squared upper-face displacement norms, GT minus prediction, "
        "mean over sequences; MVE: mean unsquared L2 over pooled frames and vertices.",
        "",
    ]
    return lines


def _paired_section(board: lb.Leaderboard, groups: list[Group], tables: dict) -> list[str]:
    col = board.columns[0]
    candidates = [g for g in groups if col.name in g.row.values]
    learned = [g for g in candidates if not g.floor] or candidates  # floors compete only among themselves
    if len(candidates) < 2:
        return ["## Paired comparisons", "", "Needs at least two methods with results.", ""]
    ranked = board.ranked(col.name)
    best = next(g for r in ranked for g in learned if g.row is r)
    tests = [(g, ev.compare(board, tables, best.row, g.row, col.name)) for g in candidates if g is not best]
    done = [t for _, t in tests if t is not None]
    fmt = _column_format([v / col.scale for t in done for v in (t.diff, *(t.ci or ()))])
    rows = []
    for g, t in tests:
        if t is None:
            rows.append([g.label, "–", "no per-sequence tables", "–", "–", "–"])
            continue
        seeds = f"{t.n_seeds[0]}/{t.n_seeds[1]}" + (" paired" if t.paired_seeds else "")
        ci = f"[{fmt(t.ci[0] / col.scale)}, {fmt(t.ci[1] / col.scale)}]" if t.ci else f"no claim: {t.reason}"
        p = f"{t.p_value:.3g}" if t.p_value is not None else "–"
        rows.append([g.label, fmt(t.diff / col.scale), ci, p, seeds, str(t.n_clips)])
    contrast = "|A|−|B|" if col.direction == "zero" else "A−B"  # best at 0: distances to 0 compared
    head = ["B (other method)", f"Δ{col.header()} ({contrast})", "95% CI", "p", "seeds (A/B)", "clips"]
    return [
        "## Paired comparisons",
        "",
        f"Best method by {col.name.upper()}: **{best.label}** (A), against each other method over seeds "
        "and the test clips both scored: clips resampled jointly for both methods and all seeds, seeds "
        "paired where both methods ran them, a t interval on the two-level bootstrap's standard error "
        f"(p from the same t, so the CI excludes 0 exactly when p < 0.05). One seed or fewer than "
        f"{MIN_CLIPS} clips: no claim.",
        "",
        md_table(head, rows),
        "",
    ]


def _subject_section(board: lb.Leaderboard, per_seq: dict) -> list[str]:
    col = board.columns[0]
    table = {}
    for label, df in per_seq.items():
        if df is None or col.name not in df:
            continue
        # frame-pooled per subject (LVE/MVE pool frames; sequence means are weighted by length)
        per_clip = (
            df.groupby(["subject", "clip"]).agg(v=(col.name, "mean"), n=("n_frames", "mean")).reset_index()
        )
        pooled = per_clip.groupby("subject").apply(
            lambda x: np.average(x["v"], weights=x["n"]), include_groups=False
        )
        table[label] = pooled
    if not table:
        return []
    frame = pd.DataFrame(table) / col.scale
    head = ["subject", *frame.columns]
    fmts = {c: _column_format(frame[c]) for c in frame.columns}
    rows = [[s, *[fmts[c](frame.at[s, c]) for c in frame.columns]] for s in frame.index]
    return [
        "## Per-subject breakdown",
        "",
        f"{col.header()} per test subject (frames pooled within a subject; newest run of each row).",
        "",
        md_table(head, rows),
        "",
    ]


def _provenance_section(runs: pd.DataFrame, board: lb.Leaderboard) -> list[str]:
    """Every run: its row, seed, speech encoder and the digests of what it used."""
    row_of = {i: r.label for r in board.rows for i in r.run_ids}
    seed = column(Tag.SEED)
    rows = []
    for _, run in runs.iterrows():
        p = prov.run_provenance(run)
        label = row_of.get(run["run_id"], "other dataset version")
        s = run.get(seed)
        rows.append([f"`{run['run_id'][:8]}`", label, "–" if pd.isna(s) else str(s), *p.values()])
    return [
        "## Provenance",
        "",
        "What each run used: the speech encoder (random init = not pretrained; its digest is of the "
        "frozen weights where it has any, which name the checkpoint, else of all its weights), the "
        "dataset version, the preset, the commit, and the CPU threads and device it ran on.",
        "",
        md_table(["run", "row", "seed", *prov.PROVENANCE], rows),
        "",
    ]


def _speed_section(board: lb.Leaderboard, groups: list[Group], fig_dir: Path) -> list[str]:
    """Size and speed from the one timing function (talkbench.speed), and quality against speed."""
    head = ["method", *prov.SPEED, "× real time (test split)"]
    rows = [[g.label, *prov.speed_cells(g.row), _test_split_speed(g.row)] for g in groups]
    lines = [
        "## Size and speed",
        "",
        *prov.notes(("speed",)),
        "",
        md_table(head, rows),
        "",
    ]
    col = board.columns[0] if board.columns else None
    points = [
        {
            "label": g.label,
            "rtf": g.row.speed["rtf"],
            "value": g.row.values[col.name][0] / col.scale,
            "err": g.row.values[col.name][1] / col.scale,
        }
        for g in groups
        if col is not None and col.name in g.row.values and np.isfinite(g.row.speed.get("rtf", np.nan))
        and g.row.speed["rtf"] > 0
    ]
    if points:
        path = figures.speed_quality(pd.DataFrame(points), col.header(), fig_dir / "speed_quality.png")
        lines += [f"![speed against quality](figures/{path.name})", ""]
    else:
        lines += ["No run logged a speed profile (runs before talkbench.speed): no speed/quality plot.", ""]
    return lines


def _sampling_section(tracker, runs: pd.DataFrame, groups: list[Group], fig_dir: Path) -> list[str]:
    """Methods that sample: N per clip, and the per-frame spread of their samples on the lips for one
    test clip (eval/sample_spread.csv of each group's newest run)."""
    by_id = runs.set_index("run_id")
    spreads: dict[str, pd.DataFrame] = {}
    rows = []
    for g in groups:
        n = by_id.loc[g.newest].get(column(Tag.SAMPLES))
        if not isinstance(n, str) or n == "1":
            continue
        rows.append([g.label, n])
        try:
            spreads[g.label] = pd.read_csv(
                tracker.download_artifacts(g.newest, for_member(SAMPLE_SPREAD_ARTIFACT, g.member)),
                dtype={"condition": "string"},
            )
        except TalkbenchError:  # a run logged before the spread was stored
            continue
    if not rows:
        return []
    lines = [
        "## Samples",
        "",
        "Methods that sample are scored on N samples per test clip and condition, sample k seeded from "
        "(run seed, clip, condition, k) (`eval/sample_seeds.csv`): MEE is the LVE of their mean, CE the "
        "LVE of the best of N, Diversity the mean distance between samples; LVE, MVE and FDD score "
        "sample 0. Deterministic methods are predicted once (N = 1).",
        "",
        md_table(["method", "samples per clip (N)"], rows),
        "",
    ]
    if spreads:
        clip = next(iter(spreads.values()))["clip"].iloc[0]
        curves = {}
        for label, table in spreads.items():
            sub = table[table["clip"] == clip]
            if len(sub):
                first = sub[sub["condition"].fillna("") == sub["condition"].fillna("").iloc[0]]
                curves[label] = first["spread"].to_numpy()
        path = figures.sample_spread(curves, clip, fig_dir / "sample_spread.png")
        lines += [
            f"Spread of the samples on the lips per frame, clip {clip}: the mean over lip vertices of "
            "the root of the summed per-coordinate variance over the N samples (0 for identical "
            "samples).",
            "",
            f"![sample spread](figures/{path.name})",
            "",
        ]
    return lines


def _test_split_speed(row: lb.Row) -> str:
    """Seconds of animation per second of predict over the whole test split (every run logs it)."""
    value = row.speed.get("test_split", np.nan)
    return "–" if not np.isfinite(value) else f"{value:.1f}×"


def _training_section(tracker, groups: list[Group], fig_dir: Path) -> list[str]:
    curves = {}
    for g in groups:
        run = tracker.get_run(g.newest)
        keys = [k for k in run.data.metrics if re.fullmatch(r"[^/]+/(train|val)/[^/]+", k)]
        if keys:
            curves[g.label] = {k: tracker.metric_history(g.newest, k) for k in keys}
    if not curves:
        return []
    path = figures.training_curves(curves, fig_dir / "training_curves.png")
    return [
        "## Training curves",
        "",
        "Loss per epoch and stage. Training and validation share a panel only where they log the same "
        "loss terms; otherwise each has its own panel, and the legend names the terms. A stage of one "
        "epoch is one marker.",
        "",
        f"![training curves](figures/{path.name})",
        "",
    ]


def _ablation_section(tracker, dataset: str, board: lb.Leaderboard, fig_dir: Path) -> list[str]:
    runs = tracker.search_runs(dataset, finished_only=False)
    kind, parent_col = column(Tag.KIND), column(Tag.PARENT_RUN_ID)
    if runs.empty or kind not in runs:
        return []
    parents = runs[runs[kind].fillna("") == Kind.SWEEP]
    children_all = runs[runs["status"] == "FINISHED"] if parent_col in runs else runs.iloc[0:0]
    lines = []
    col = board.columns[0]
    for _, parent in parents.iterrows():
        linked = parent.get(column(Tag.POINT_RUNS))  # NaN for a sweep stopped before it linked any
        points = json.loads(linked) if isinstance(linked, str) and linked else []
        children = children_all[
            (children_all.get(parent_col) == parent["run_id"]) | children_all["run_id"].isin(points)
        ]
        metric_col = metric_column(test_metric(col.name))
        if children.empty or metric_col not in children:
            continue
        grid = json.loads(parent.get(column(Tag.GRID)) or "{}")
        for key in grid:
            param = param_column(canonical_key(key))  # a grid may name dataset.X, runs log dataset.options.X
            if param not in children:
                continue
            others = [param_column(canonical_key(k)) for k in grid if k != key]
            others = [o for o in others if o in children]
            named = _setting_labels(children, others) if others else ""
            frame = children.assign(series=named)
            table = frame.groupby([param, "series"])[metric_col].agg(["mean", "std", "count"]).reset_index()
            table = table.rename(columns={param: key})
            table["mean"] /= col.scale
            table["std"] /= col.scale
            if not others:
                table = table.drop(columns="series")
            name = re.sub(r"[^A-Za-z0-9]+", "_", f"ablation_{parent[column(Tag.METHOD)]}_{key}")
            path = figures.ablation_curve(table, key, col.name.upper(), col.header(), fig_dir / f"{name}.png")
            fmt = _column_format([*table["mean"], *table["std"].dropna()])
            rows = [
                [
                    str(r[key]),
                    *([r["series"]] if others else []),
                    # one seed: its value alone (no "± 0", which would claim no spread)
                    fmt(r["mean"]) + (f" ± {fmt(r['std'])}" if r["count"] > 1 else ""),
                    str(int(r["count"])),
                ]
                for _, r in table.iterrows()
            ]
            lines += [
                f"### Ablation: {parent[column(Tag.METHOD)]} — {key}",
                "",
                f"![{name}](figures/{path.name})",
                "",
                md_table(
                    [
                        key,
                        *([", ".join(o.removeprefix(param_column("")) for o in others)] if others else []),
                        col.header(),
                        "seeds",
                    ],
                    rows,
                ),
                "",
            ]
    return (["## Ablations", ""] + lines) if lines else []


def _setting_labels(runs: pd.DataFrame, params: list[str]) -> pd.Series:
    """Per run, the settings that tell its series apart, as ``name=value`` (``stage2=True``)."""
    short = {p: p.removeprefix(param_column("")).split(".")[-1] for p in params}
    values = runs[params].fillna("–").astype(str)  # NaN: a param this run lacks
    return values.apply(lambda r: ", ".join(f"{short[k]}={v}" for k, v in r.items()), axis=1)


@dataclass
class ShownClips:
    """The test clips the report shows (mouth opening, viewer) and the runs it shows them for."""

    runs: dict[str, object]  # group label -> TrackedRun of its newest run
    spec: object  # the dataset's DatasetSpec
    clips: list


def _shown_clips(tracker, groups: list[Group], n_clips: int) -> ShownClips | None:
    """The first ``n_clips`` test clips, loaded once for every section that shows them."""
    from talkbench.runs import TrackedRun

    if n_clips <= 0:
        return None
    opened = {g.label: TrackedRun(g.newest, tracker, g.member) for g in groups}
    try:
        data = opened[groups[0].label].dataset
        test = opened[groups[0].label].test_clips
    except TalkbenchError:
        return None
    clips = [test[i] for i in range(min(n_clips, len(test)))]
    clips = [c for c in clips if any(r.has_prediction(c.name) for r in opened.values())]
    return ShownClips(opened, data.spec, clips) if clips else None


def _mouth_section(shown: ShownClips | None, fig_dir: Path) -> list[str]:
    from talkbench.metrics import mouth_opening
    from talkbench.metrics.evaluate import mouth_pair_of

    pair = mouth_pair_of(shown.spec) if shown else None
    if pair is None:
        return []
    lines = [
        "## Mouth opening",
        "",
        "Distance between upper and lower lip against the ground truth "
        "(speaker-conditioned methods: first training-speaker condition).",
        "",
    ]
    for clip in shown.clips:
        curves = {}
        for label, run in shown.runs.items():
            if run.has_prediction(clip.name):
                curves[label] = mouth_opening(run.prediction(clip.name), *pair)
        gt = mouth_opening(np.asarray(clip.vertices), *pair)
        path = figures.mouth_opening(
            curves, gt, clip.fps, clip.name, fig_dir / f"mouth_{clip.name}.png", shown.spec.unit
        )
        lines += [f"![mouth opening {clip.name}](figures/{path.name})", ""]
    return lines


def _viewer_section(shown: ShownClips | None, out: Path) -> list[str]:
    """The shown clips in the 3D viewer, written to <report>/viewer/ and embedded (it opens from disk)."""
    from talkbench.viewer import write_viewer
    from talkbench.viewer.runs import clips_from_runs

    if shown is None or shown.spec.faces is None:
        return []
    clips = clips_from_runs(list(shown.runs.items()), shown.clips, skip_missing=True)
    write_viewer(out / "viewer", clips, title=f"talkbench viewer: {shown.spec.name}")
    return [
        "## Viewer",
        "",
        "The clips above in 3D: the ground truth and each row's newest run, played to the clip's audio "
        "(pick the clip and the runs; scrub, step frames, change speed, orbit or use the front and side "
        "views; the heatmap colours each vertex by its L2 error against the ground truth). It opens from "
        "the report's folder without a server.",
        "",
        '<iframe id="viewer" src="viewer/index.html" title="3D viewer" width="100%" height="640" '
        'loading="lazy"></iframe>',
        "",
        "[Open the viewer on its own page](viewer/index.html)",
        "",
    ]


# -- rendering ---------------------------------------------------------------------------------
def to_html(markdown: str, base: Path, title: str) -> str:
    """Render the Markdown report to one self-contained HTML page (figures inlined as data URIs)."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(markdown)

    def inline(match: re.Match) -> str:
        src = match.group(1)
        path = base / html.unescape(src)
        if not path.is_file():
            return match.group(0)
        data = base64.b64encode(path.read_bytes()).decode()
        return f'src="data:image/png;base64,{data}"'

    body = re.sub(r'src="([^"]+\.png)"', inline, body)
    buf = io.StringIO()
    buf.write(
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
    )
    buf.write(f'<link rel="icon" href="data:,"><style>{CSS}</style></head><body>\n{body}</body></html>\n')
    return buf.getvalue()
