"""Property-based tests of the study app (issue 17): no request body makes the answer endpoint fail
with 500, and no exported CSV cell starts with a spreadsheet formula character."""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from talkbench.study.app import create_app, load_manifest
from talkbench.study.store import FORMULA_START, AnswerStore, unescape_cell
from tests.study_fixtures import make_small_study

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    return make_small_study(tmp_path_factory.mktemp("study"))


@pytest.fixture(scope="module")
def client(study_dir):
    return create_app(study_dir).test_client()


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**62, max_value=2**70)
    | st.floats()
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
rater_ids = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
# bodies close to valid ones reach every check behind the type checks, not only the first
near_valid = st.fixed_dictionaries(
    {},
    optional={
        "rater": rater_ids | json_values | st.just("bob\n"),
        "trial": st.sampled_from(["t001", "t002", "t003", "t999"]) | json_values,
        "criterion": st.sampled_from(["lipsync", "realism", "style"]) | json_values,
        "choice": st.sampled_from(["left", "right"]) | json_values,
        "rt_ms": st.integers(min_value=-10, max_value=2**65) | json_values,
        "extra": json_values,
    },
)
bodies = json_values | near_valid


@SETTINGS
@given(body=bodies)
def test_any_json_body_gives_a_client_status_never_500(client, body):
    res = client.post("/api/answer", data=json.dumps(body), content_type="application/json")
    assert res.status_code in (200, 400, 404, 413), (res.status_code, res.get_data(as_text=True))
    payload = res.get_json()
    assert payload is not None
    assert ("stored" in payload) if res.status_code == 200 else ("error" in payload)


# bodies around the size limit, built from a short random pattern: 16 KB of raw random bytes is over
# hypothesis's entropy budget per example (its data_too_large health check fails the test at random)
large_bodies = st.builds(
    lambda pattern, n: (pattern * (n // len(pattern) + 1))[:n],
    st.binary(min_size=1, max_size=64),
    st.integers(16_000, 17_000),
)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=2000) | large_bodies)
def test_any_bytes_body_gives_a_client_status_never_500(client, data):
    res = client.post("/api/answer", data=data, content_type="application/json")
    assert res.status_code in (200, 400, 404, 413)


def _cells(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


# text a client controls: anything SQLite can store (no lone surrogates), often formula-like
free_text = st.builds(
    lambda head, tail: head + tail,
    st.sampled_from(["", "=", "+", "-", "@", "\t", "\r", "'", "'=", "\n"]),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=30),
)


@settings(max_examples=60, deadline=None)
@given(answers=st.lists(st.tuples(free_text, free_text, st.none() | st.integers(0, 2**40)), max_size=6))
def test_exported_cells_never_start_with_a_formula_character(study_dir, answers):
    manifest = load_manifest(study_dir)
    trial = manifest["trials"][0]
    with tempfile.TemporaryDirectory() as tmp:
        store = AnswerStore(Path(tmp) / "answers.db")
        for rater, ua, rt in answers:  # the store below the app: whatever it holds is exported safely
            store.add(rater, trial["id"], trial["criteria"][0], "left", rt, ua)
        out = store.export_csv(manifest, Path(tmp) / "answers.csv")
        rows = _cells(out)
    header, body = rows[0], rows[1:]
    for row in body:
        for cell in row:
            assert not cell.startswith(FORMULA_START), cell
    col = {name: i for i, name in enumerate(header)}
    kept = {}  # first answer per rater is the one kept
    for rater, ua, rt in answers:
        kept.setdefault(rater, (ua, rt))
    got = {
        unescape_cell(r[col["rater"]]): (unescape_cell(r[col["user_agent"]]), r[col["rt_ms"]]) for r in body
    }
    assert got == {k: (ua, "" if rt is None else str(rt)) for k, (ua, rt) in kept.items()}


header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


@settings(max_examples=40, deadline=None)
@given(
    posts=st.lists(
        st.tuples(rater_ids, st.sampled_from(["", "=", "+", "-", "@", "\t"]), header_text),
        min_size=1,
        max_size=5,
    )
)
def test_answers_through_the_app_export_without_formulas(study_dir, posts):
    with tempfile.TemporaryDirectory() as tmp:
        study = Path(tmp) / "study"
        shutil.copytree(study_dir, study, ignore=shutil.ignore_patterns("answers.db*"))
        client = create_app(study).test_client()
        for rater, head, ua in posts:
            body = {"rater": rater, "trial": "t001", "criterion": "lipsync", "choice": "right", "rt_ms": 7}
            res = client.post("/api/answer", json=body, headers={"User-Agent": head + ua})
            assert res.status_code == 200
        out = AnswerStore(study / "answers.db").export_csv(load_manifest(study), study / "answers.csv")
        rows = _cells(out)
    assert len(rows) == 1 + len({r for r, _, _ in posts})
    for row in rows[1:]:
        assert all(not cell.startswith(FORMULA_START) for cell in row), row
