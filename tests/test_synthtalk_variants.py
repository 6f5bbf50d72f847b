"""SynthTalk's variants: a second face mesh and ARKit-named rig weights, their own speakers; a vertex and
a blendshape-capable method on the blendshape variant, FaceFormer and MemoryTalker on the second mesh,
and blendshape weights out of `bench animate` as CSV and a three.js AnimationClip."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from talkbench import tracking
from talkbench.cli import app
from talkbench.datasets import load_dataset
from talkbench.datasets.check import check_dataset
from talkbench.datasets.synthtalk import cache_key, generate
from talkbench.datasets.synthtalk.blendshapes import ARKIT_CHANNELS
from talkbench.errors import DataError
from talkbench.runs import TrackedRun
from talkbench.viewer.runs import view_runs
from tests.viewer_files import decoded_track, positions, read_call

runner = CliRunner()


@pytest.fixture(scope="module")
def variants(tmp_path_factory, synthtalk_tiny):
    root = tmp_path_factory.mktemp("variants")
    return {
        "main": synthtalk_tiny,
        **{v: generate(root / v, preset="tiny", seed=0, variant=v) for v in ("topology2", "blendshape")},
    }


def _test_texts(root) -> set[tuple[str, ...]]:
    ds = load_dataset(
        json.loads((root / "synthtalk.json").read_text()).get("dataset", "synthtalk"), root=root
    )
    texts = set()
    for ref in ds.split("test").refs:
        segments = json.loads((root / "alignments" / f"{ref.name}.json").read_text())["segments"]
        texts.add(tuple(s["phoneme"] for s in segments))
    return texts


def test_each_variant_has_its_own_speakers_and_test_text(variants):
    names = {"main": "synthtalk", "topology2": "synthtalk-topology2", "blendshape": "synthtalk-blendshape"}
    specs = {v: load_dataset(n, root=variants[v]).spec for v, n in names.items()}
    subjects = {v: {s for sp in spec.splits.values() for s in sp.subjects} for v, spec in specs.items()}
    assert not subjects["main"] & subjects["topology2"] and not subjects["main"] & subjects["blendshape"]
    assert (
        specs["topology2"].name == "synthtalk-topology2"
        and specs["blendshape"].name == "synthtalk-blendshape"
    )
    main_test = _test_texts(variants["main"])
    assert not main_test & _test_texts(variants["topology2"]) and not main_test & _test_texts(
        variants["blendshape"]
    )
    # different cache entries, the main one as before variants
    assert cache_key("tiny", 0, 0.8).startswith("tiny-seed0-")
    assert cache_key("tiny", 0, 0.8, "topology2").startswith("topology2-tiny-seed0-")


def test_topology2_is_another_mesh_of_the_face(variants):
    main = load_dataset("synthtalk", root=variants["main"]).spec
    t2 = load_dataset("synthtalk-topology2", root=variants["topology2"]).spec
    assert (main.n_vertices, t2.n_vertices) == (200, 296)
    assert set(t2.regions) == set(main.regions) and len(t2.regions["lips"]) != len(main.regions["lips"])
    assert t2.faces.max() == t2.n_vertices - 1 and len(np.unique(t2.faces)) == t2.n_vertices
    assert check_dataset(variants["topology2"]).ok


def test_blendshape_targets_are_the_rig_weights(variants):
    ds = load_dataset("synthtalk-blendshape", root=variants["blendshape"])
    spec = ds.spec
    assert spec.target == "blendshapes" and spec.channels == ARKIT_CHANNELS and len(ARKIT_CHANNELS) == 11
    assert [spec.channels[k] for k in spec.channel_groups["upper"]] == [
        "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "eyeBlinkLeft", "eyeBlinkRight"
    ]  # fmt: skip
    clip = ds.split("test")[0]
    assert clip.weights.shape == (clip.n_frames, 11)
    left, right = spec.channels.index("mouthStretchLeft"), spec.channels.index("mouthStretchRight")
    np.testing.assert_array_equal(clip.weights[:, left], clip.weights[:, right])
    # the rig reproduces the generator's meshes, lip closure included
    closed = clip.weights[:, spec.channels.index("mouthClose")].max()
    assert closed > 0.9
    decoded = spec.rig.decode(clip.weights, clip.template, clip.subject)
    np.testing.assert_allclose(decoded, clip.vertices, atol=2e-6)
    assert check_dataset(variants["blendshape"]).ok
    with pytest.raises(DataError, match="a SynthTalk 'blendshape' dataset, not 'main'"):
        load_dataset("synthtalk", root=variants["blendshape"])


def _run(uri, method, dataset, root, *extra):
    res = runner.invoke(app, [
        "run", "--method", method, "--preset", "tiny", "--dataset", dataset, "--data-root", str(root),
        "--tracking-uri", uri, "--no-progress", "--set", "eval.n_boot=20", *extra,
    ])  # fmt: skip
    assert res.exit_code == 0, res.output
    return res


def test_vertex_and_blendshape_methods_on_the_blendshape_variant(variants, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    root = variants["blendshape"]
    _run(uri, "mean-motion", "synthtalk-blendshape", root)  # blendshape-capable: predicts weights
    _run(uri, "faceformer", "synthtalk-blendshape", root, "--set", "faceformer.epochs=1")  # weights head
    _run(uri, "memorytalker", "synthtalk-blendshape", root)  # a vertex method: animates the meshes
    runs = tracking.Tracker(uri).search_runs("synthtalk-blendshape").set_index("tags.talkbench.method")
    mm, ff, mt = runs.loc["mean-motion"], runs.loc["faceformer"], runs.loc["memorytalker"]
    for weights in (mm, ff):  # weights channel by channel, and as meshes through the rig
        assert 0 < weights["metrics.test/bs_mse"] and 0 < weights["metrics.test/bs_mse_lower"]
        assert 0 < weights["metrics.test/lve"]
    assert 0 < mt["metrics.test/lve"] and np.isnan(mt["metrics.test/bs_mse"])
    client = tracking.Tracker(uri).client
    arts = {a.path for a in client.list_artifacts(mm["run_id"])}
    assert {"predictions", "predictions_blendshapes"} <= arts

    # the viewer shows a weights run through the dataset's rig, a vertex run as its meshes
    spec = load_dataset("synthtalk-blendshape", root=root).spec
    folder = view_runs([mm["run_id"], mt["run_id"]], tmp_path / "view", tracking_uri=uri).parent
    shown = TrackedRun.open(mm["run_id"], uri)
    name = read_call(folder / "data" / "manifest.js")[0]["clips"][0]["name"]
    clip = shown.test_clip(name)
    meta, levels = decoded_track(folder, name, mm["run_id"])
    assert [t["label"] for t in meta["tracks"]] == [
        "ground truth", "mean-motion (weights via rig)", "memorytalker"
    ]  # fmt: skip
    rigged = spec.rig.decode(shown.weights_prediction(name), clip.template, clip.subject)
    assert np.abs(positions(meta, levels) - rigged).max() <= meta["step"] / 2 + 1e-6
    assert TrackedRun.open(mt["run_id"], uri).weights_prediction(name) is None

    # bench animate: the weights as CSV with ARKit names, a three.js clip, and meshes through the rig
    wav = root / "wav" / f"{load_dataset('synthtalk-blendshape', root=root).split('test').refs[0].name}.wav"
    out = tmp_path / "anim"
    res = runner.invoke(app, ["animate", "--model", mm["run_id"], "--audio", str(wav), "--out", str(out),
                              "--no-render", "--tracking-uri", uri])  # fmt: skip
    assert res.exit_code == 0, res.output
    weights = np.load(out / f"{wav.stem}.blendshapes.npy")
    with open(out / f"{wav.stem}.blendshapes.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["frame", "time", *ARKIT_CHANNELS] and len(rows) == len(weights) + 1
    np.testing.assert_allclose(np.array(rows[5][2:], float), weights[4], atol=1e-6)
    assert float(rows[2][1]) == pytest.approx(1 / 30, abs=1e-6)
    clip = json.loads((out / f"{wav.stem}.blendshapes.json").read_text())
    jaw = next(t for t in clip["tracks"] if t["name"] == ".morphTargetInfluences[jawOpen]")
    assert jaw["type"] == "number" and len(jaw["times"]) == len(weights)
    np.testing.assert_allclose(jaw["values"], weights[:, 0], atol=1e-6)
    assert clip["duration"] == pytest.approx(len(weights) / 30) and len(clip["tracks"]) == 11
    assert np.load(out / f"{wav.stem}.npy").shape == (len(weights), 200, 3)


@pytest.mark.parametrize("method", ["faceformer", "memorytalker"])
def test_topology2_trains_end_to_end(variants, tmp_path, method):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    _run(uri, method, "synthtalk-topology2", variants["topology2"])
    (lve,) = tracking.Tracker(uri).search_runs("synthtalk-topology2")["metrics.test/lve"]
    assert np.isfinite(lve) and lve > 0
