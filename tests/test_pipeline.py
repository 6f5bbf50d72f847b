"""pipeline.run end to end on SynthTalk tiny, checking what lands in the MLflow store."""

from __future__ import annotations

from dataclasses import dataclass

import _mlflow_store
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from talkbench import pipeline, scoring, tracking
from talkbench.config import RunConfig, load_config
from talkbench.datasets import load_dataset
from talkbench.errors import TalkbenchError
from talkbench.methods.reference import TemplateMethod
from talkbench.registry import METHODS
from talkbench.tracking import tracker as tracker_module

_migrated_db = _mlflow_store._migrated_db
store_uri = _mlflow_store.store_uri


@dataclass
class OneHotConfig:
    gain: float = 0.01


class OneHotTemplate(TemplateMethod):
    """Learning-free but speaker-conditioned: template + a per-condition offset (tests the conditions)."""

    name = "test-onehot"
    Config = OneHotConfig
    uses_speaker_id = True

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.offset = torch.nn.Parameter(torch.zeros(1))  # one parameter, for parameter_counts

    @torch.no_grad()
    def predict(self, audio, template, condition=None):
        assert condition is not None
        out = super().predict(audio, template)
        return out + self.config.gain * (condition + 1)


@pytest.fixture
def onehot_method():
    METHODS.register("test-onehot", OneHotTemplate)
    yield "test-onehot"
    METHODS._items.pop("test-onehot", None)


def _cfg(method: str, root, **kw) -> RunConfig:
    if method == "test-onehot":  # no preset files: the same settings as the tiny presets
        return load_config(method, overrides=["dataset.preset=tiny", "eval.n_boot=50"], data_root=root, **kw)
    return load_config(method, preset="tiny", data_root=root, **kw)


def test_template_run_logs_everything(store_uri, synthtalk_tiny, tmp_path):
    cfg = _cfg("template", synthtalk_tiny, seed=3)
    result = pipeline.run(cfg, tracking_uri=store_uri, progress=False)
    tr = tracking.Tracker(store_uri)
    run = tr.get_run(result.run_id)
    data = load_dataset("synthtalk", root=synthtalk_tiny)
    test = data.split("test")

    assert run.info.status == "FINISHED"
    assert tr.client.get_experiment(run.info.experiment_id).name == "synthtalk"
    # params = the flattened resolved config
    assert run.data.params == {k: tracker_module._fmt(v) for k, v in cfg.params().items()}
    tags = run.data.tags
    assert tags["talkbench.method"] == "template" and tags["talkbench.seed"] == "3"
    assert tags["talkbench.preset"] == "tiny" and tags["talkbench.device"] == pipeline.resolved_device(cfg)
    assert tags["talkbench.config_hash"] == cfg.config_hash()
    assert tags["talkbench.version.mlflow"] and tags["talkbench.version.torch"]
    assert tags["talkbench.git_dirty"] in ("true", "false", "unknown")
    assert float(tags["talkbench.inference_speed"]) > 0
    assert tags["talkbench.params.total"] == "0"
    assert tags["talkbench.region_digest"] == data.spec.region_digest()
    assert float(tags["talkbench.scale.lve"]) == data.spec.table_scales.get("lve", 1.0)
    # the dataset as an input with the spec's digest
    contexts = {
        {t.key: t.value for t in i.tags}["mlflow.data.context"]: i.dataset for i in run.inputs.dataset_inputs
    }
    assert set(contexts) == {"train+test"}
    assert contexts["train+test"].digest == data.spec.digest and contexts["train+test"].name == "synthtalk"

    # one prediction per test clip, (T, V*3) float32, equal to the template for this method
    names = sorted(tr.list_artifacts(result.run_id, "predictions"))
    assert names == sorted(f"predictions/{c.name}.npy" for c in test.refs)
    clip = test[0]
    pred = np.load(tr.download_artifacts(result.run_id, f"predictions/{clip.name}.npy", tmp_path))
    assert pred.dtype == np.float32 and pred.shape[1] == data.spec.n_vertices * 3
    np.testing.assert_allclose(
        pred.reshape(len(pred), -1, 3),
        np.broadcast_to(clip.template, (len(pred), *clip.template.shape)),
        atol=1e-6,
    )
    assert abs(len(pred) - clip.n_frames) <= 1

    # metrics: logged values equal the evaluation; per-sequence table has every clip
    assert run.data.metrics["test/lve"] == pytest.approx(result.evaluation.aggregates["lve"])
    table = pd.read_csv(tr.download_artifacts(result.run_id, "eval/per_sequence.csv", tmp_path))
    assert sorted(table["clip"]) == sorted(c.name for c in test.refs)
    assert "speed/realtime_factor" in run.data.metrics
    # the speed profile of the one timing function, on 10 s of the first test clip's speech
    assert run.data.metrics["speed/clip_s"] == 10.0 and run.data.metrics["speed/params_total"] == 0
    assert run.data.metrics["speed/rtf"] > 0 and run.data.metrics["speed/threads"] == torch.get_num_threads()
    assert run.data.metrics["speed/train_s"] == pytest.approx(sum(result.train.stage_seconds.values()))
    # the resolved config is saved with the run and in the run dir; it rebuilds the same config
    saved = yaml.safe_load(open(tr.download_artifacts(result.run_id, "config.yaml", tmp_path)))
    assert saved == cfg.to_dict()
    assert RunConfig.load(result.run_dir / "config.yaml").config_hash() == cfg.config_hash()
    # the run directory's record keeps only the store (MLflow keeps the status)
    assert tracking.read_run_record(result.run_id) == {"run_id": result.run_id, "tracking_uri": tr.uri}
    # the final weights are logged as a checkpoint
    assert {"checkpoints/model.safetensors", "checkpoints/model.safetensors.sha256"} <= set(
        tr.list_artifacts(result.run_id, "checkpoints")
    )


def test_speaker_conditioned_method_predicts_every_condition(
    store_uri, synthtalk_tiny, onehot_method, monkeypatch
):
    calls: list[tuple[int, list]] = []
    original = OneHotTemplate.predict_conditions

    def counted(self, audio, template, conditions):
        calls.append((int(audio.shape[-1]), list(conditions)))
        return original(self, audio, template, conditions)

    monkeypatch.setattr(OneHotTemplate, "predict_conditions", counted)
    result = pipeline.run(_cfg(onehot_method, synthtalk_tiny), tracking_uri=store_uri, progress=False)
    data = load_dataset("synthtalk", root=synthtalk_tiny)
    spec, test = data.spec, data.split("test")
    # one call per test clip with all its conditions at once (sample renders reuse the predictions)
    assert [n for n, _ in calls] == [len(c.audio) for c in test]
    assert all(conds == list(range(len(spec.train_subjects))) for _, conds in calls)
    # test speakers are unseen: each clip once per training speaker
    assert all(spec.speaker_index(s) == -1 for s in test.subjects)
    assert result.n_predictions == len(test) * len(spec.train_subjects)
    names = set(tracking.Tracker(store_uri).list_artifacts(result.run_id, "predictions"))
    expected = {f"predictions/{c.name}_condition_{s}.npy" for c in test.refs for s in spec.train_subjects}
    assert names == expected
    per_seq = result.evaluation.per_sequence
    assert sorted(per_seq["condition"].unique()) == sorted(spec.train_subjects)
    # a larger offset is a larger error: the conditions really reached predict()
    mve = per_seq.groupby("condition")["mve_sum"].sum()
    order = [spec.train_subjects[i] for i in range(len(spec.train_subjects))]
    assert list(mve.loc[order]) == sorted(mve.loc[order])


def test_conditions_for_seen_and_unseen_speakers(synthtalk_tiny):
    spec = load_dataset("synthtalk", root=synthtalk_tiny).spec
    onehot = OneHotTemplate(OneHotConfig(), spec)
    plain = TemplateMethod(None, spec)
    seen = spec.train_subjects[1]
    assert scoring.conditions_for(onehot, spec, seen) == [1]
    assert scoring.conditions_for(onehot, spec, "unseen") == list(range(len(spec.train_subjects)))
    assert scoring.conditions_for(plain, spec, "unseen") == [None]


def test_failed_run_is_marked_failed(store_uri, synthtalk_tiny, monkeypatch, tmp_path):
    monkeypatch.setenv("TALKBENCH_HOME", str(tmp_path / "home"))  # no other test's run directories

    class Boom(RuntimeError):
        pass

    def broken_predict(self, audio, template, condition=None):
        raise Boom("predict failed")

    monkeypatch.setattr(TemplateMethod, "predict", broken_predict)
    with pytest.raises(Boom):
        pipeline.run(_cfg("template", synthtalk_tiny), tracking_uri=store_uri, progress=False)
    runs = tracking.Tracker(store_uri).search_runs("synthtalk", finished_only=False)
    assert runs["status"].tolist() == ["FAILED"]
    rid = runs.loc[0, "run_id"]
    assert "status" not in tracking.read_run_record(rid)
    # a failed run is not "last"
    with pytest.raises(TalkbenchError, match=r"no interrupted \(KILLED\) run .*1 FAILED"):
        tracking.last_interrupted_run()


def test_bad_prediction_shape_is_a_clear_error(store_uri, synthtalk_tiny, monkeypatch):

    monkeypatch.setattr(TemplateMethod, "predict", lambda self, a, t, c=None: torch.zeros(5, 3))
    shape = r"predict_conditions\(\) for clip .* returned shape \(1, 5, 3\)"
    with pytest.raises(TalkbenchError, match=shape):
        pipeline.run(_cfg("template", synthtalk_tiny), tracking_uri=store_uri, progress=False)


def test_predictions_are_scored_as_they_come(store_uri, synthtalk_tiny, onehot_method, monkeypatch):
    """Each clip's predictions reach the evaluator before the next clip is predicted: a run holds one
    clip's predictions at a time, not the whole test split (VOCASET x 8 conditions is gigabytes)."""
    from talkbench.metrics import Evaluator

    events: list[str] = []
    predict, add = OneHotTemplate.predict_conditions, Evaluator.add
    monkeypatch.setattr(
        OneHotTemplate, "predict_conditions", lambda self, *a: events.append("predict") or predict(self, *a)
    )
    monkeypatch.setattr(Evaluator, "add", lambda self, *a: events.append("add") or add(self, *a))
    pipeline.run(_cfg(onehot_method, synthtalk_tiny), tracking_uri=store_uri, progress=False)
    n_cond = len(load_dataset("synthtalk", root=synthtalk_tiny).spec.train_subjects)
    assert events.count("predict") > 1
    assert events == (["predict"] + ["add"] * n_cond) * events.count("predict")


def test_prediction_selection_when_too_big(synthtalk_tiny, monkeypatch):
    data = load_dataset("synthtalk", root=synthtalk_tiny)
    test = list(data.split("test"))
    plain = TemplateMethod(None, data.spec)
    assert scoring.prediction_selection(plain, test, data.spec) is None  # tiny: save all
    monkeypatch.setattr(scoring, "MAX_PREDICTION_BYTES", 1)
    chosen = scoring.prediction_selection(plain, test, data.spec)
    subjects = {c.subject for c in test}
    assert len(chosen) == len(subjects)
    assert {next(c.subject for c in test if c.name == n) for n in chosen} == subjects


def test_predictions_can_be_switched_off(store_uri, synthtalk_tiny):
    cfg = load_config(
        "template", preset="tiny", data_root=synthtalk_tiny, overrides=["eval.save_predictions=false"]
    )
    result = pipeline.run(cfg, tracking_uri=store_uri, progress=False)
    tr = tracking.Tracker(store_uri)
    assert tr.list_artifacts(result.run_id, "predictions") == []
    assert result.n_predictions == len(load_dataset("synthtalk", root=synthtalk_tiny).split("test"))
