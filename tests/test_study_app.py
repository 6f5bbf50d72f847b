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
