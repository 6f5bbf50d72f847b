"""The study builder and web app: manifest, randomisation, storage, validation, safety."""

import json

import pytest

from talkbench.study.app import create_app
from talkbench.study.store import AnswerStore
from tests.study_fixtures import make_small_study


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    return make_small_study(tmp_path_factory.mktemp("study"))


def test_manifest_has_pairs_catch_trials_and_videos(study_dir):
    manifest = json.loads((study_dir / "manifest.json").read_text())
    trials = manifest["trials"]
    assert len(trials) == 3  # 2 clips x 1 pair + 1 catch
    catch = [t for t in trials if t["catch"]]
    assert len(catch) == 1 and catch[0]["expected"] in ("left", "right")
    assert catch[0][catch[0]["expected"]] == "ground-truth"
    for t in trials:
        assert (study_dir / t["video"]).stat().st_size > 0
        assert {t["left"], t["right"]} in ({"A", "B"}, {"ground-truth", "catch:static"})


def test_sides_are_randomised_by_seed(tmp_path):
    sides = set()
    for seed in range(4):
        m = json.loads((make_small_study(tmp_path / str(seed), seed=seed) / "manifest.json").read_text())
        sides |= {t["left"] for t in m["trials"] if not t["catch"]}
    assert sides == {"A", "B"}


def test_answers_are_stored_at_once_and_survive_a_restart(study_dir, tmp_path):
    client = create_app(study_dir).test_client()
    study = client.get("/api/study?rater=alice").get_json()
    assert "left" not in json.dumps(study["trials"])  # methods are hidden from raters
    first = study["trials"][0]
    body = {
        "rater": "alice",
        "trial": first["id"],
        "criterion": first["criteria"][0],
        "choice": "left",
        "rt_ms": 5,
    }
    assert client.post("/api/answer", json=body).get_json() == {"stored": True}
    # a repeated answer keeps the first one
    assert client.post("/api/answer", json={**body, "choice": "right"}).get_json() == {"stored": False}
    restarted = create_app(study_dir).test_client()
    answered = restarted.get("/api/progress?rater=alice").get_json()["answered"]
    assert answered == [[first["id"], first["criteria"][0]]]
    assert AnswerStore(study_dir / "answers.db").frame()["choice"].tolist() == ["left"]


@pytest.mark.parametrize(
    "body, status",
    [
        ({"rater": "bob", "trial": "t999", "criterion": "lipsync", "choice": "left"}, 404),
        ({"rater": "bob", "trial": "t001", "criterion": "lipsync", "choice": "up"}, 400),
        ({"rater": "bob", "trial": "t001", "criterion": "beauty", "choice": "left"}, 400),
        ({"rater": "../../etc", "trial": "t001", "criterion": "lipsync", "choice": "left"}, 400),
        ({"rater": "bob", "trial": "t001", "criterion": "lipsync", "choice": "left", "rt_ms": -3}, 400),
        ([1, 2, 3], 400),
    ],
)
def test_malformed_answers_are_rejected(study_dir, body, status):
    client = create_app(study_dir).test_client()
    res = client.post("/api/answer", json=body)
    assert res.status_code == status
    assert "error" in res.get_json()


def test_path_traversal_is_refused(study_dir):
    client = create_app(study_dir).test_client()
    assert client.get("/videos/t001.mp4").status_code == 200
    for path in (
        "/videos/../manifest.json",
        "/videos/..%2fmanifest.json",
        "/videos/%2e%2e/answers.db",
        "/static/../app.py",
    ):
        assert client.get(path).status_code == 404


def test_server_listens_on_loopback_by_default(study_dir):
    import socket
    import subprocess
    import sys
    import time

    import psutil

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "talkbench.cli", "study", "serve", str(study_dir), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        listening = []
        deadline = time.time() + 60
        while not listening and time.time() < deadline:
            time.sleep(0.3)
            conns = psutil.Process(proc.pid).net_connections(kind="tcp")
            listening = [c.laddr for c in conns if c.status == psutil.CONN_LISTEN]
        assert listening, "the study server did not start"
        assert {addr.ip for addr in listening} == {"127.0.0.1"}
        assert {addr.port for addr in listening} == {port}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_export_joins_answers_with_the_manifest(study_dir, tmp_path):
    from talkbench.study.app import load_manifest

    store = AnswerStore(study_dir / "answers.db")
    store.add("carol", "t002", "realism", "right")
    out = store.export_csv(load_manifest(study_dir), tmp_path / "answers.csv")
    text = out.read_text().splitlines()
    assert text[0].startswith("rater,trial,criterion,choice,left,right,catch,expected")
    assert any(line.startswith("carol,t002,realism,right,") for line in text)


# -- hardening (issue 17, item 6) -------------------------------------------------------------------


@pytest.fixture
def fresh_study(study_dir, tmp_path):
    """The small study without any answers (the module's study_dir collects them across tests)."""
    import shutil

    out = tmp_path / "study"
    shutil.copytree(study_dir, out, ignore=shutil.ignore_patterns("answers.db*"))
    return out


VALID = {"rater": "bob", "trial": "t001", "criterion": "lipsync", "choice": "left"}


@pytest.mark.parametrize(
    "change",
    [
        {"trial": ["t001"]},
        {"trial": {"id": "t001"}},
        {"rater": ["bob"]},
        {"criterion": {"x": 1}},
        {"rt_ms": 2**63},
        {"rt_ms": 2**64 + 5},
        {"rt_ms": True},
        {"rt_ms": 5.0},
        {"rt_ms": "5"},
        {"rater": "bob\n"},
        {"rater": "\nbob"},
        {"choice": ["left"]},
    ],
)
def test_ill_typed_answers_are_400_not_500(fresh_study, change):
    app = create_app(fresh_study)
    res = app.test_client().post("/api/answer", json={**VALID, **change})
    assert res.status_code == 400, res.get_data(as_text=True)
    assert res.get_json()["error"]
    assert AnswerStore(fresh_study / "answers.db").frame().empty  # nothing stored, not even coerced


def test_valid_answer_and_rater_query_use_a_full_match(fresh_study):
    client = create_app(fresh_study).test_client()
    assert client.post("/api/answer", json={**VALID, "rt_ms": 0}).status_code == 200
    assert client.get("/api/progress?rater=bob").status_code == 200
    assert client.get("/api/progress?rater=bob%0A").status_code == 400
    assert client.get("/api/study?rater=bob%0A").status_code == 400


def test_deeply_nested_or_undecodable_json_is_400(fresh_study):
    client = create_app(fresh_study).test_client()
    for data in (b"[" * 5000 + b"]" * 5000, b"\xff\xfe{", b'{"rater": NaN', b""):
        res = client.post("/api/answer", data=data, content_type="application/json")
        assert res.status_code == 400, data[:20]


def test_oversized_body_is_413_with_a_json_error(fresh_study):
    client = create_app(fresh_study).test_client()
    res = client.post("/api/answer", json={**VALID, "pad": "x" * 20_000})
    assert res.status_code == 413 and "error" in res.get_json()


@pytest.mark.parametrize(
    "host, status",
    [
        ("localhost", 200),
        ("localhost:8000", 200),
        ("127.0.0.1:8000", 200),
        ("[::1]:8000", 200),
        ("LOCALHOST.", 200),
        ("evil.example", 421),
        ("evil.example:8000", 421),
        ("127.0.0.1.evil.example", 421),
        ("localhost:http", 400),
        ("", 400),
    ],
)
def test_host_header_is_checked_against_dns_rebinding(fresh_study, host, status):
    client = create_app(fresh_study).test_client()
    res = client.get("/api/progress?rater=bob", headers={"Host": host})
    assert res.status_code == status
    if status != 200:
        assert "error" in res.get_json()


def test_configured_host_names_are_served(fresh_study):
    from talkbench.study.app import allowed_hosts

    client = create_app(fresh_study, allowed_hosts("0.0.0.0", ["study.lab.example"])).test_client()
    assert client.get("/", headers={"Host": "study.lab.example:8000"}).status_code == 200
    assert client.get("/", headers={"Host": "localhost"}).status_code == 200
    assert client.get("/", headers={"Host": "0.0.0.0"}).status_code == 421  # a wildcard is no name
    client = create_app(fresh_study, allowed_hosts("192.168.1.20")).test_client()
    assert client.get("/", headers={"Host": "192.168.1.20:8000"}).status_code == 200


def test_export_escapes_formulas_writes_integers_and_empty_cells(fresh_study, tmp_path):
    import csv

    from talkbench.study.analysis import load_answers
    from talkbench.study.app import load_manifest

    client = create_app(fresh_study).test_client()
    evil_ua = '=HYPERLINK("http://evil.example","x")'
    assert (
        client.post(
            "/api/answer", json={**VALID, "rater": "-2_3", "rt_ms": 100}, headers={"User-Agent": evil_ua}
        ).status_code
        == 200
    )
    assert client.post("/api/answer", json={**VALID, "rater": "@alice"}).status_code == 400  # not an id
    assert (
        client.post(
            "/api/answer", json={**VALID, "rater": "carl"}, headers={"User-Agent": "@SUM(1+1)"}
        ).status_code
        == 200
    )
    out = AnswerStore(fresh_study / "answers.db").export_csv(load_manifest(fresh_study), tmp_path / "a.csv")
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_rater = {r["rater"]: r for r in rows}
    assert set(by_rater) == {"'-2_3", "carl"}
    assert by_rater["'-2_3"]["user_agent"] == "'" + evil_ua
    assert by_rater["carl"]["user_agent"] == "'@SUM(1+1)"
    assert by_rater["'-2_3"]["rt_ms"] == "100"  # not "100.0"
    assert by_rater["carl"]["rt_ms"] == ""  # not "nan"
    assert "nan" not in out.read_text().lower()
    # the analysis reads the original ids back
    assert sorted(load_answers(out)["rater"]) == ["-2_3", "carl"]


def test_export_names_answers_to_trials_missing_from_the_manifest(fresh_study, tmp_path):
    from talkbench.errors import TalkbenchError
    from talkbench.study.app import load_manifest

    store = AnswerStore(fresh_study / "answers.db")
    store.add("dan", "t777", "lipsync", "left")
    with pytest.raises(TalkbenchError, match="t777"):
        store.export_csv(load_manifest(fresh_study), tmp_path / "a.csv")
