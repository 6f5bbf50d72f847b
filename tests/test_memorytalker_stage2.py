"""MemoryTalker's stage-2 study (issue 29 point 6). The speaker-retrieval diagnostic: nearest speaker
centroid of a clip's speaking style, on a constructed case with a known answer, on the model (chunked
embeddings equal each clip alone) and through a tiny run (eval/style_retrieval.json and the
diagnostic/ metrics). The stage-2 epochs key: 0 epochs is stage 1 alone, to the last bit (slow)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_memorytalker import make_clip, make_spec, tiny_config

from talkbench import contract
from talkbench.methods.memorytalker import MemoryTalker
from talkbench.methods.memorytalker.retrieval import retrieval_report, speaker_retrieval

# training speakers A near (0, 0) and B near (10, 0); at test, A seen (enrolled by its training clips),
# C unseen with 4 clips of which the last sits on B, D unseen with a single clip (cannot be enrolled)
TRAIN = np.array([[0, 0], [0, 1], [1, 0], [10, 0], [10, 1], [11, 0]], float)
TRAIN_SPEAKERS = ["A", "A", "A", "B", "B", "B"]
TEST = np.array([[0.5, 0.5], [0, 10], [0, 11], [1, 10], [10, 0.5], [20, 20]], float)
TEST_SPEAKERS = ["A", "C", "C", "C", "C", "D"]


def test_constructed_case_has_the_known_answer():
    out = retrieval_report({"s": TRAIN}, TRAIN_SPEAKERS, {"s": TEST}, TEST_SPEAKERS)["s"]
    test = out["test"]
    # A's clip and C's first three are retrieved; C's fourth lands on B; D's only clip is skipped
    assert test["top1"] == pytest.approx(4 / 5)
    assert test["per_speaker"] == {"A": 1.0, "C": pytest.approx(0.75)}
    assert (test["n_probes"], test["n_skipped"], test["n_speakers"]) == (5, 1, 4)
    assert test["chance"] == pytest.approx(1 / 4)  # A, B, C (left out: 3 other clips) and D
    train = out["train"]  # leave-one-out among the training speakers: every clip nearest its own
    assert (train["top1"], train["chance"], train["n_probes"]) == (1.0, 0.5, 6)


def test_a_probe_is_left_out_of_its_own_centroid():
    # x's clips at 0 and 6, y's at 10: probing x's clip at 6 with itself in x's centroid (3, distance 3)
    # would retrieve x; left out, x's centroid is 0 (distance 6) and y (distance 4) is nearer
    emb = np.array([[0.0], [6.0], [10.0], [10.0]])
    speakers = ["x", "x", "y", "y"]
    assert speaker_retrieval(emb[1:2], ["x"], emb, speakers)["top1"] == 1.0
    assert speaker_retrieval(emb[1:2], ["x"], emb, speakers, [1])["top1"] == 0.0


def test_no_scorable_probe_gives_none():
    out = speaker_retrieval(np.zeros((1, 2)), ["z"], TRAIN, TRAIN_SPEAKERS)
    assert out["top1"] is None and out["chance"] is None and out["n_skipped"] == 1


def test_model_embeddings_in_chunks_equal_each_clip_alone():
    spec = make_spec()
    model = MemoryTalker(tiny_config(), spec).eval()
    names = [("A", 1), ("B", 1), ("C", 2), ("A", 2), ("B", 3)]
    clips = [make_clip(s, k, 0.4 + 0.13 * i, spec, i) for i, (s, k) in enumerate(names)]
    emb, speakers = model.style_embeddings(clips, chunk=2)
    assert speakers == ["A", "B", "C", "A", "B"]
    with torch.no_grad():
        for i, clip in enumerate(clips):
            wave = torch.as_tensor(clip.audio)[None]
            f_s, mel = model._style_pass(wave, torch.tensor([wave.shape[1]]))
            enc = model.style_encoder
            torch.testing.assert_close(
                torch.as_tensor(emb["triplet"][i]), enc.project(f_s)[0], atol=1e-5, rtol=1e-5
            )
            torch.testing.assert_close(
                torch.as_tensor(emb["weights"][i]), enc.weights(f_s)[0], atol=1e-5, rtol=1e-5
            )
            torch.testing.assert_close(torch.as_tensor(emb["log_mel"][i]), mel[0], atol=1e-4, rtol=1e-5)
    diag = model.diagnostics(clips[:3], clips[3:])
    assert [d.name for d in diag] == ["style_retrieval"] and diag[0].content["stylized"] is False
    assert MemoryTalker(tiny_config(stage2=False), spec).diagnostics(clips, clips) == []


def test_a_tiny_run_logs_the_retrieval_diagnostic(synthtalk_tiny, tmp_path):
    from talkbench import pipeline
    from talkbench.config import load_config
    from talkbench.tracking import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = load_config("memorytalker", preset="tiny", data_root=str(synthtalk_tiny))
    res = pipeline.run(cfg, tracking_uri=uri, progress=False)
    tracker = Tracker(uri)
    path = tracker.download_artifacts(res.run_id, contract.diagnostic_artifact("style_retrieval"), tmp_path)
    content = json.loads(path.read_text())
    metrics = tracker.get_run(res.run_id).data.metrics
    assert content["stylized"] is True
    test = content["spaces"]["triplet"]["test"]
    # tiny: 4 training speakers, 1 unseen test speaker with 3 clips (enrolled by the other 2)
    assert (test["n_probes"], test["n_speakers"], test["chance"]) == (3, 5, pytest.approx(0.2))
    assert metrics[contract.diagnostic_metric("style_retrieval_top1")] == pytest.approx(test["top1"])
    assert metrics[contract.diagnostic_metric("style_retrieval_chance")] == pytest.approx(0.2)
    for space in ("weights", "log_mel"):
        key = contract.diagnostic_metric(f"style_retrieval_top1_{space}")
        assert metrics[key] == pytest.approx(content["spaces"][space]["test"]["top1"])
    assert content["spaces"]["triplet"]["train"]["chance"] == pytest.approx(0.25)
    assert res.metrics[contract.diagnostic_metric("style_retrieval_top1")] == pytest.approx(test["top1"])


@pytest.mark.slow
def test_zero_animating_epochs_is_stage1_alone(synthtalk_tiny, tmp_path):
    """Stage 1 trains the same weights whatever stage 2 is (the style branch is built last and the
    trainer seeds after building), and a model whose animating stage never ran predicts unstylized:
    so ``animating_epochs=0`` and ``stage2=false`` give the same test metrics exactly."""
    from talkbench import pipeline
    from talkbench.config import load_config

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    lve = {}
    for override in ("memorytalker.animating_epochs=0", "memorytalker.stage2=false"):
        cfg = load_config("memorytalker", preset="tiny", data_root=str(synthtalk_tiny), overrides=[override])
        lve[override] = pipeline.run(cfg, tracking_uri=uri, progress=False).metrics["test/lve"]
    assert len(set(lve.values())) == 1, lve
