"""`bench import`: a FaceFormer checkpoint written as the official code writes it (our weights renamed)
becomes a run tagged imported, with an MLflow model that predicts like the original weights,
evaluated on the test split of a (fake, VOCASET-shaped) dataset and on the leaderboard as
"faceformer (official checkpoint)" in its own row; a checkpoint of another method: one line, exit 2."""

from __future__ import annotations

import csv
import io

import mlflow
import numpy as np
import pytest
import torch
from _paper_encoder import ENCODER
from datasets_fakes import make_vocaset_like
from typer.testing import CliRunner

from talkbench import contract, official_import
from talkbench.cli import app
from talkbench.methods import official
from talkbench.methods.memorytalker import official as mt_official


def encoder_set(method: str) -> str:
    items = ", ".join(f"{k}: {official_import._yaml(v)}" for k, v in ENCODER.items())
    return f"{method}.audio.hf_overrides={{{items}}}"


def bench(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("import")
    torch.manual_seed(0)
    model = official_import.paper_model("faceformer", "paper-vocaset", encoder_overrides=ENCODER)
    torch.nn.init.normal_(model.vertice_map_r.weight, std=0.05)  # zero head: give the import signal
    path = official.converter("faceformer").save_official(model.eval(), tmp / "vocaset.pth")
    audio = torch.randn(16000, generator=torch.Generator().manual_seed(3))
    template = torch.randn(model.spec.n_vertices, 3, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model.predict_conditions(audio, template, [1]).numpy()
    return tmp, path, audio.numpy(), template.numpy(), expected


def test_import_with_data_is_evaluated_and_on_the_leaderboard(checkpoint):
    tmp, path, audio, template, expected = checkpoint
    data = make_vocaset_like(tmp / "vocaset", seconds=1.0)
    uri = f"sqlite:///{tmp}/mlflow.db"
    out = bench(
        "import", "--method", "faceformer", "--checkpoint", str(path), "--preset", "paper-vocaset",
        "--data-root", str(data), "--set", encoder_set("faceformer"), "--tracking-uri", uri,
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    run_id = out.stdout.split()[1]
    run = mlflow.MlflowClient(uri).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[contract.Tag.IMPORTED] == contract.IMPORTED_OFFICIAL
    assert "vocaset.pth:sha256=" in run.data.tags[contract.Tag.CHECKPOINT]
    assert contract.test_metric("lve") in run.data.metrics
    # the logged model predicts like the weights that were exported
    from talkbench import load_model
    from talkbench.datasets import vocaset

    speaker = vocaset.TRAIN_SUBJECTS[1]
    inputs = {"audio": audio, "template": template}
    got = load_model(run_id, uri).predict(None, inputs, {"condition": speaker})
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    board = bench("leaderboard", "--dataset", "vocaset", "--format", "csv", "--tracking-uri", uri)
    assert board.exit_code == 0, board.output
    rows = list(csv.DictReader(io.StringIO(board.stdout)))
    assert [r["method"] for r in rows] == ["faceformer"] and run_id in rows[0]["run_ids"]
    table = bench("leaderboard", "--dataset", "vocaset", "--format", "markdown", "--tracking-uri", uri)
    assert "faceformer (official checkpoint)" in table.stdout


def test_checkpoint_of_another_method_is_one_line(checkpoint, tmp_path):
    torch.manual_seed(0)
    other = official_import.paper_model("memorytalker", "paper-vocaset", encoder_overrides=ENCODER)
    path = mt_official.save_official(other, tmp_path / "memorytalker.pth")
    out = bench(
        "import", "--method", "faceformer", "--checkpoint", str(path), "--preset", "paper-vocaset",
        "--set", encoder_set("faceformer"), "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db",
    )  # fmt: skip
    assert out.exit_code == 2, out.output
    err = out.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and "memorytalker checkpoint" in err, err


def test_missing_file_and_unknown_preset(checkpoint, tmp_path):
    _, path, *_ = checkpoint
    for args, needle in (
        (["--checkpoint", str(tmp_path / "none.pth"), "--preset", "paper-vocaset"], "no such file"),
        (["--checkpoint", str(path), "--preset", "tiny"], "has no official checkpoints"),
    ):
        out = bench("import", "--method", "faceformer", *args, "--tracking-uri", f"sqlite:///{tmp_path}/m.db")
        assert out.exit_code == 2 and needle in out.stderr, out.output


def test_codetalker_files_import_into_codetalker_nd(tmp_path):
    """CodeTalker's two official files (paper structure, narrow widths) into codetalker-nd through
    `bench import`: CodeTalker's weights unchanged, CodeTalker's licence, the test-time-only variant
    recorded (the released weights were trained with the nearest code), a model that samples."""
    from test_official_checkpoints import SMALL_CODETALKER

    from talkbench.methods.codetalker import official as ct_official

    torch.manual_seed(0)
    ct = official_import.paper_model("codetalker", "paper-vocaset", overrides=SMALL_CODETALKER,
                                     encoder_overrides=ENCODER)
    torch.nn.init.normal_(ct.predictor.feat_map.weight, std=0.05)
    stage2, stage1 = ct_official.save_official(ct.eval(), tmp_path / "s2.pth.tar", tmp_path / "s1.pth.tar")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    small = [s.replace("codetalker.", "codetalker-nd.", 1) for s in SMALL_CODETALKER]
    sets = [x for s in [*small, encoder_set("codetalker-nd")] for x in ("--set", s)]
    out = bench("import", "--method", "codetalker-nd", "--checkpoint", str(stage2), "--vqvae", str(stage1),
                "--preset", "paper-vocaset", "--tracking-uri", uri, *sets)
    assert out.exit_code == 0, out.output
    run = mlflow.MlflowClient(uri).get_run(out.stdout.split()[1])
    tags = run.data.tags
    assert tags[contract.Tag.IMPORTED] == contract.IMPORTED_OFFICIAL
    assert "s2.pth.tar:sha256=" in tags[contract.Tag.CHECKPOINT] and "s1.pth.tar:sha256=" in tags[
        contract.Tag.CHECKPOINT]
    assert tags.get(contract.Tag.LICENCE) == getattr(official.converter("codetalker"), "LICENCE", None)
    assert run.data.params["codetalker-nd.nd_in_training"] == "False"
    from talkbench import load_model

    nd = load_model(run.info.run_id, uri).method
    assert nd.name == "codetalker-nd" and nd.vqvae.quantizer.temperature == 2.0
    assert all(torch.equal(v, ct.state_dict()[k]) for k, v in nd.state_dict().items())
    audio, template = torch.randn(8000), torch.randn(nd.spec.n_vertices, 3)
    a, b = nd.predict_samples(audio, template, 1, [5, 6])
    assert not torch.equal(a, b) and torch.equal(nd.predict_samples(audio, template, 1, [6])[0], b)
