"""Every trained run logs an MLflow model (pyfunc) that predicts without the dataset: loaded in a fresh
process with the dataset folder removed it gives the run's saved predictions; `--register` adds it to
the Model Registry and ``models:/NAME/1`` / ``models:/NAME@alias`` work wherever a run id does."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from _shared import DATA
from typer.testing import CliRunner

from talkbench import contract
from talkbench.cli import app
from talkbench.datasets import load_dataset
from talkbench.errors import TalkbenchError
from talkbench.runs import ModelAddress, TrackedRun, model_address, resolve_run_id

NAME = "tiny-faceformer"
DEMO_WAV = Path(str(DATA / "speech/faceformer_demo.wav"))


@contextlib.contextmanager
def mlflow_store(uri: str):
    old = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(old[0])
        mlflow.set_registry_uri(old[1])

FRESH = r"""
import json, sys
import mlflow, numpy as np
uri, ref, inputs, out = sys.argv[1:5]
mlflow.set_tracking_uri(uri); mlflow.set_registry_uri(uri)
model = mlflow.pyfunc.load_model(ref)
data = np.load(inputs)
pred = model.predict({"audio": data["audio"], "template": data["template"]}, params={"condition": "all"})
np.save(out, pred)
"""


@pytest.fixture(scope="module")
def trained(synthtalk_tiny, tmp_path_factory):
    """A tiny FaceFormer run registered as NAME, trained on a copy of SynthTalk tiny that is then
    removed; the first test clip's audio and template are kept aside for the fresh process."""
    tmp = tmp_path_factory.mktemp("mlflow_model")
    root = tmp / "synthtalk"
    shutil.copytree(synthtalk_tiny, root)
    uri = f"sqlite:///{tmp}/mlflow.db"
    out = CliRunner().invoke(
        app,
        ["run", "--method", "faceformer", "--preset", "tiny", "--data-root", str(root), "--tracking-uri",
         uri, "--no-progress", "--no-leaderboard", "--register", NAME],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    run_id = next(line.split()[1] for line in out.stdout.splitlines() if line.startswith("run "))
    data = load_dataset("synthtalk", root)
    clip = next(iter(data.split("test")))
    inputs = tmp / "inputs.npz"
    np.savez(inputs, audio=np.asarray(clip.audio, np.float32), template=np.asarray(clip.template, np.float32))
    speakers = list(data.spec.train_subjects)
    shutil.rmtree(root)  # from here on nothing can read the dataset
    return {
        "uri": uri,
        "run_id": run_id,
        "clip": clip.name,
        "inputs": inputs,
        "speakers": speakers,
        "tmp": tmp,
    }


def _fresh_predict(trained, ref: str):
    out = trained["tmp"] / "pred.npy"
    proc = subprocess.run(
        [sys.executable, "-c", FRESH, trained["uri"], ref, str(trained["inputs"]), str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return np.load(out)


def _saved(trained) -> np.ndarray:
    run = TrackedRun.open(trained["run_id"], trained["uri"])
    return np.stack([run.prediction(trained["clip"], s) for s in trained["speakers"]])


def test_pyfunc_in_a_fresh_process_without_the_dataset_predicts_what_the_run_saved(trained):
    saved = _saved(trained)
    client = mlflow.MlflowClient(trained["uri"])
    model_id = client.get_run(trained["run_id"]).outputs.model_outputs[0].model_id
    got = _fresh_predict(trained, f"models:/{model_id}")
    assert got.shape == saved.shape
    np.testing.assert_allclose(got, saved, atol=1e-6, rtol=0)


def test_registered_version_predicts_the_same(trained):
    got = _fresh_predict(trained, f"models:/{NAME}/1")
    np.testing.assert_allclose(got, _saved(trained), atol=1e-6, rtol=0)


def test_model_carries_spec_templates_version_and_signature(trained):
    from mlflow.models import Model

    from talkbench import load_model

    bundle = load_model(trained["run_id"], trained["uri"]).bundle
    assert list(bundle.spec.train_subjects) == trained["speakers"]
    assert set(bundle.templates) == set(trained["speakers"])
    assert bundle.spec.faces is not None and bundle.spec.regions["lips"].size
    assert bundle.meta["talkbench_version"] and bundle.meta["run_id"] == trained["run_id"]
    assert set(bundle.reference) == {"centroid_hz", "log_flatness", "log_high_band"}
    with mlflow_store(trained["uri"]):
        metadata = Model.load(model_address(trained["run_id"], trained["uri"]).model_uri)
    inputs = metadata.get_input_schema().input_names()
    assert inputs == ["audio", "template"]
    tags = mlflow.MlflowClient(trained["uri"]).get_run(trained["run_id"]).data.tags
    assert tags[contract.Tag.REGISTERED_MODEL] == f"models:/{NAME}/1"


def test_model_is_in_the_runs_experiment_beside_the_store(trained):
    """The UI's run page lists the models of the run's experiment: one left in Default is not shown,
    and its artifacts would land in ./mlruns of whatever directory the run was started from."""
    client = mlflow.MlflowClient(trained["uri"])
    run = client.get_run(trained["run_id"])
    (output,) = run.outputs.model_outputs
    model = client.get_logged_model(output.model_id)
    assert model.experiment_id == run.info.experiment_id != "0"
    assert model.source_run_id == trained["run_id"] and model.status == "READY"
    assert model.params.get("method") == "faceformer"  # the run's params, as Model.log copies them
    assert "/mlruns/0/" not in model.artifact_location


def test_models_uris_resolve_to_the_run(trained):
    client = mlflow.MlflowClient(trained["uri"], registry_uri=trained["uri"])
    client.set_registered_model_alias(NAME, "champion", "1")
    for ref in (f"models:/{NAME}/1", f"models:/{NAME}@champion", f"runs:/{trained['run_id']}/model"):
        assert resolve_run_id(ref, trained["uri"]) == trained["run_id"]
        assert TrackedRun.open(ref, trained["uri"]).run_id == trained["run_id"]
    with pytest.raises(TalkbenchError, match="not in the model registry"):
        resolve_run_id(f"models:/{NAME}/7", trained["uri"])


def test_a_run_id_addresses_the_model_it_logged_and_only_a_logged_model(trained):
    """runs.model_address reads the store (no model loaded); a run without a model says so."""
    client = mlflow.MlflowClient(trained["uri"])
    model_id = client.get_run(trained["run_id"]).outputs.model_outputs[0].model_id
    for ref in (trained["run_id"], f"runs:/{trained['run_id']}/model"):
        assert model_address(ref, trained["uri"]).model_uri == f"models:/{model_id}"
    registered = model_address(f"models:/{NAME}/1", trained["uri"])
    assert registered == ModelAddress(trained["run_id"], f"models:/{NAME}/1")
    with pytest.raises(TalkbenchError, match="logged no MLflow model 'other'"):
        model_address(f"runs:/{trained['run_id']}/other", trained["uri"])
    with pytest.raises(TalkbenchError, match="does not exist"):
        model_address("0" * 32, trained["uri"])
    missing = trained["tmp"] / "none.db"
    with pytest.raises(TalkbenchError, match="no tracking store"):
        model_address(trained["run_id"], f"sqlite:///{missing}")
    assert not missing.exists()  # a reader creates no store


def test_bundle_round_trips_the_spec(trained, synthtalk_tiny, tmp_path):
    from talkbench.model_bundle import _spec_from_parts, _spec_to_parts

    spec = load_dataset("synthtalk", synthtalk_tiny).spec
    plain, arrays = _spec_to_parts(spec)
    back = _spec_from_parts(json.loads(json.dumps(plain, default=str)), arrays)
    assert back.fps == spec.fps and back.n_vertices == spec.n_vertices and back.digest == spec.digest
    assert back.splits == spec.splits and back.train_subjects == spec.train_subjects
    assert back.region_digest() == spec.region_digest()
    np.testing.assert_array_equal(back.faces, spec.faces)
    assert back.frames_for_samples(16000) == spec.frames_for_samples(16000)


@pytest.mark.parametrize("method", ["codetalker", "faceformer"])
def test_bundle_builds_without_the_pretrained_encoder_it_holds(method, synthtalk_tiny, tmp_path, monkeypatch):
    """A bundle holds its speech encoder's weights: rebuilding it needs no cached SynthTalk encoder
    (CodeTalker keeps its audio settings as a dict, FaceFormer as a dataclass)."""
    import torch

    from talkbench.config import load_config
    from talkbench.errors import ConfigError
    from talkbench.model_bundle import read_bundle, write_bundle
    from talkbench.pipeline import build_method

    monkeypatch.setenv("TALKBENCH_HOME", str(tmp_path / "home-without-encoder"))
    spec = load_dataset("synthtalk", synthtalk_tiny).spec

    def cfg(*extra):
        return load_config(method, preset="tiny", data_root=synthtalk_tiny,
                           overrides=[f"{method}.audio.kind=synthtalk", *extra])

    with pytest.raises(ConfigError, match="pretrain-encoder"):  # the run's config needs the cache
        build_method(cfg(), spec)
    model = build_method(cfg(f"{method}.audio.pretrained=false"), spec)  # stands for trained weights
    write_bundle(tmp_path / "bundle", cfg(), model, spec, {})
    rebuilt = read_bundle(tmp_path / "bundle").method()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(rebuilt.state_dict()[key], value)


# -- trust (issue 27): checksums, no pickle, no code run by talkbench's loader ------------------------
GADGET = """
import os, pickle, sys

class Gadget:
    def __reduce__(self):
        return (os.system, (f"touch {sys.argv[2]}",))

with open(sys.argv[1], "wb") as fh:
    pickle.dump(Gadget(), fh)
"""


def _gadget(path, marker):
    """A pickle that, once unpickled, creates ``marker`` (written by a separate process)."""
    subprocess.run([sys.executable, "-c", GADGET, str(path), str(marker)], check=True)
    assert path.stat().st_size and not marker.exists()


def _flip(path, at: int | None = None) -> None:
    blob = bytearray(path.read_bytes())
    at = len(blob) // 2 if at is None else at
    blob[at] ^= 0x01
    path.write_bytes(bytes(blob))


def _download(trained, dst) -> Path:
    """The logged model's files, as MLflow stores them (nothing loaded)."""
    uri = model_address(trained["run_id"], trained["uri"]).model_uri
    with mlflow_store(trained["uri"]):
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst)))


def test_one_byte_changed_in_any_file_of_a_model_folder_is_refused_naming_it(trained, tmp_path):
    from talkbench import load_model
    from talkbench.model_bundle import BUNDLE_FILES, MANIFEST_FILE

    folder = _download(trained, tmp_path / "m")
    bundle = folder / "artifacts" / "model"
    assert load_model(folder).bundle.spec.train_subjects
    for name in (*BUNDLE_FILES, MANIFEST_FILE):
        copy = tmp_path / name
        shutil.copytree(bundle, copy)
        _flip(copy / name)
        named = MANIFEST_FILE if name == MANIFEST_FILE else f"{copy / name}: its sha256 differs"
        with pytest.raises(TalkbenchError, match=re.escape(named)):
            load_model(copy)


def test_the_runs_digests_catch_a_folder_rewritten_with_its_manifest(trained):
    """One byte changed in the store's copy is refused by name; weights and manifest rewritten together
    are refused through the digests the run recorded."""
    from talkbench import load_model
    from talkbench.model_bundle import WEIGHTS_FILE, file_digests, format_digests, sha256_file

    client = mlflow.MlflowClient(trained["uri"])
    model_id = client.get_run(trained["run_id"]).outputs.model_outputs[0].model_id
    location = client.get_logged_model(model_id).artifact_location.removeprefix("file://")
    bundle = Path(location) / "artifacts" / "model"
    tag = client.get_run(trained["run_id"]).data.tags[contract.Tag.MODEL_FILES]
    assert tag == format_digests(file_digests(bundle)) and f"{WEIGHTS_FILE}:sha256=" in tag
    original = (bundle / WEIGHTS_FILE).read_bytes(), (bundle / "manifest.json").read_text()
    try:
        _flip(bundle / WEIGHTS_FILE, len(original[0]) - 3)
        with pytest.raises(TalkbenchError, match=f"{WEIGHTS_FILE}: its sha256 differs"):
            load_model(trained["run_id"], trained["uri"])
        manifest = json.loads(original[1])
        manifest["files"][WEIGHTS_FILE] = sha256_file(bundle / WEIGHTS_FILE)
        (bundle / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(TalkbenchError, match=f"sha256 of {WEIGHTS_FILE} differs from the one its run"):
            load_model(trained["run_id"], trained["uri"])
    finally:
        (bundle / WEIGHTS_FILE).write_bytes(original[0])
        (bundle / "manifest.json").write_text(original[1])
    assert load_model(trained["run_id"], trained["uri"]).method is not None


def test_the_logged_model_holds_no_pickle_and_talkbench_runs_no_code_of_it(trained, tmp_path):
    """Models-from-code: the MLmodel names a code file, no python_model.pkl; a folder whose files are
    replaced with pickle gadgets loads (or is refused) through talkbench's loader without running them,
    and an old pickled model (python_model.pkl + weights.pt) still loads through it."""
    import torch
    import yaml
    from safetensors.torch import load_file

    from talkbench import load_model

    folder = _download(trained, tmp_path / "m")
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".pkl", ".pt", ".pth", ".bin")]
    for p in files:  # no pickle stream anywhere (protocol 2+ starts with PROTO 0x80)
        assert not p.read_bytes()[:1] == b"\x80", p
    flavor = yaml.safe_load((folder / "MLmodel").read_text())["flavors"]["python_function"]
    assert "python_model" not in flavor and flavor["model_code_path"].endswith("mlflow_predict.py")
    # an old-style model: pickled python model, weights.pt, no manifest; every pickle a gadget
    marker = tmp_path / "marker"
    _gadget(folder / "python_model.pkl", marker)
    flavor["python_model"] = "python_model.pkl"
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    mlmodel["flavors"]["python_function"] = flavor
    (folder / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    bundle = folder / "artifacts" / "model"
    torch.save(load_file(bundle / "model.safetensors"), bundle / "weights.pt")
    (bundle / "model.safetensors").unlink()
    (bundle / "manifest.json").unlink()
    inputs = np.load(trained["inputs"])
    got = load_model(folder).predict(None, dict(inputs), {"condition": "all"})
    np.testing.assert_allclose(got, _saved(trained), atol=1e-6, rtol=0)
    _gadget(bundle / "weights.pt", marker)  # weights_only refuses it
    with pytest.raises(Exception, match="weights"):
        load_model(folder).predict(None, dict(inputs))
    assert not marker.exists()


# ----------------------------------------------------------------------------- bench export --format hf
def _predict(model, trained) -> np.ndarray:
    data = np.load(trained["inputs"])
    inputs = {"audio": data["audio"], "template": data["template"]}
    return model.predict(None, inputs, params={"condition": "all"})


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "faceformer-tiny"
    res = CliRunner().invoke(
        app, ["export", "--model", trained["run_id"], "--format", "hf", "--out", str(out),
              "--tracking-uri", trained["uri"]],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    return out


def test_exported_folder_round_trips_to_identical_predictions(trained, exported):
    from talkbench import load_model
    from talkbench.model_bundle import BUNDLE_FILES, MANIFEST_FILE, sha256_file

    files = {p.name for p in exported.iterdir()}
    assert files == {*BUNDLE_FILES, MANIFEST_FILE, "config.json", "README.md"}
    manifest = json.loads((exported / MANIFEST_FILE).read_text())["files"]
    assert manifest == {f: sha256_file(exported / f) for f in files - {MANIFEST_FILE}}
    logged = _predict(load_model(trained["run_id"], trained["uri"]), trained)
    np.testing.assert_array_equal(_predict(load_model(exported), trained), logged)
    config = json.loads((exported / "config.json").read_text())
    assert config["method"] == "faceformer" and config["conditions"] == trained["speakers"]
    assert config["templates"] == trained["speakers"] and config["run_id"] == trained["run_id"]
    assert config["n_vertices"] > 0 and config["fps"] > 0
    assert not any(n.endswith((".pkl", ".pt", ".pth", ".py")) for n in files)  # nothing that runs on load


def test_model_card_has_method_data_licences_metrics_with_cis_and_thresholds(trained, exported):
    card = (exported / "README.md").read_text()
    run = mlflow.MlflowClient(trained["uri"]).get_run(trained["run_id"])
    lve = run.data.metrics[contract.test_metric("lve")]
    low, high = (run.data.metrics[f("lve")] for f in (contract.test_ci_low, contract.test_ci_high))
    assert f"| lve | {lve:.4g} | [{low:.4g}, {high:.4g}] |" in card
    assert "FaceFormer: Speech-Driven 3D Facial Animation with Transformers, CVPR 2022" in card
    assert "SynthTalk, generated by talkbench" in card and f"seed {run.data.tags[contract.Tag.SEED]}" in card
    assert "## Intended use" in card and "| centroid_hz |" in card  # the out-of-domain ranges
    assert "Licence of the method's release: not recorded by talkbench" in card  # FaceFormer's: none known


@pytest.mark.parametrize("method", ["selftalk", "facediffuser"])
def test_a_non_commercial_methods_card_says_so(method):
    from talkbench.hf_export import method_licence

    assert "NC" in method_licence(method, {}) and method_licence("faceformer", {}) is None


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "README.md", "arrays.npz"])
def test_one_byte_changed_in_an_exported_file_is_refused_naming_it(exported, tmp_path, name):
    from talkbench import load_model

    copy = tmp_path / "copy"
    shutil.copytree(exported, copy)
    _flip(copy / name)
    with pytest.raises(TalkbenchError, match=re.escape(f"{copy / name}: its sha256 differs")):
        load_model(copy)


def _hub_cache(exported: Path, cache: Path, repo_id: str) -> Path:
    """The folder laid out as huggingface_hub caches a download: blobs named by their hash, a
    snapshot of symlinks to them per commit, refs/main naming the commit."""
    import hashlib

    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for f in exported.iterdir():
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        shutil.copyfile(f, repo / "blobs" / digest)
        (snapshot / f.name).symlink_to(Path("..", "..", "blobs", digest))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def test_a_repo_id_in_the_local_hugging_face_cache_animates_offline(trained, exported, tmp_path):
    import os

    cache = tmp_path / "hub"
    _hub_cache(exported, cache, "talkbench/faceformer-tiny")
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    outs = {}
    for ref in ("talkbench/faceformer-tiny", str(exported)):
        out = tmp_path / ref.replace("/", "_")
        res = subprocess.run(
            [sys.executable, "-m", "talkbench.cli", "animate", "--model", ref, "--audio", str(DEMO_WAV),
             "--out", str(out), "--no-render", "--condition", "all"],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        outs[ref] = {p.name: np.load(p) for p in sorted(out.glob("*.npy"))}
    assert len(outs[str(exported)]) == len(trained["speakers"])
    assert outs["talkbench/faceformer-tiny"].keys() == outs[str(exported)].keys()
    for name, arr in outs[str(exported)].items():
        np.testing.assert_array_equal(outs["talkbench/faceformer-tiny"][name], arr)
    missing = subprocess.run(
        [sys.executable, "-m", "talkbench.cli", "animate", "--model", "talkbench/not-cached", "--audio",
         str(DEMO_WAV), "--out", str(tmp_path / "x"), "--no-render"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert missing.returncode == 2 and f"in the local cache {cache}" in missing.stderr, missing.stderr
    assert "never the network" in missing.stderr


def test_export_refuses_a_folder_that_is_not_empty(trained, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    res = CliRunner().invoke(
        app,
        ["export", "--model", trained["run_id"], "--out", str(tmp_path), "--tracking-uri", trained["uri"]],
    )
    assert res.exit_code == 2 and "not an empty folder" in res.output
    assert (tmp_path / "keep.txt").read_text() == "mine" and len(list(tmp_path.iterdir())) == 1


def test_an_old_weights_pt_folder_exports_as_safetensors(trained, tmp_path):
    import torch
    from safetensors.torch import load_file

    from talkbench import load_model
    from talkbench.hf_export import export_hf

    bundle = _download(trained, tmp_path / "m") / "artifacts" / "model"
    torch.save(load_file(bundle / "model.safetensors"), bundle / "weights.pt")  # talkbench 0.1's layout
    (bundle / "model.safetensors").unlink()
    (bundle / "manifest.json").unlink()
    out = export_hf(bundle, tmp_path / "hf")
    assert (out / "model.safetensors").is_file() and not (out / "weights.pt").exists()
    logged = _predict(load_model(trained["run_id"], trained["uri"]), trained)
    np.testing.assert_array_equal(_predict(load_model(out), trained), logged)
    assert "No metrics recorded" in (out / "README.md").read_text()  # a folder, not a run of the store
