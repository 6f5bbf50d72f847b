"""UniTalker's fine-tune recipe (the paper's headline experiment) end to end on tiny configs: a model
trained on a mixture of SynthTalk variants (main + blendshape), then a new head on the held-out second
topology from that run (``unitalker.finetune_head=RUN_ID``) with a fraction of its clips; and the same
from a ``bench import``-ed release file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from talkbench import contract, pipeline, tracking, weights_ref
from talkbench.checkpoint import load_weights
from talkbench.config import load_config
from talkbench.errors import TalkbenchError

QUICK = ["eval.n_boot=20", "unitalker.epochs=1", "unitalker.encoder_warmup_epochs=0"]  # one epoch, quick


@pytest.fixture(scope="module")
def variants(tmp_path_factory, synthtalk_tiny):
    from talkbench.datasets.synthtalk import generate

    root = tmp_path_factory.mktemp("variants")
    return {"main": synthtalk_tiny,
            **{v: generate(root / v, preset="tiny", seed=0, variant=v) for v in ("topology2", "blendshape")}}


def _finetune_cfg(root, source: str, fraction: float):
    return load_config("unitalker", dataset="synthtalk-topology2", preset="tiny", data_root=root,
                       overrides=[f"unitalker.finetune_head={source}", f"dataset.train_fraction={fraction}",
                                  *QUICK])


def _body(state) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items()
            if k.startswith("audio_encoder.") or (k.startswith("decoder.") and "identity" not in k)}


def test_a_new_head_from_a_mixture_run_with_a_fraction_of_the_clips(variants, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    mix = load_config("unitalker", dataset="synthtalk,synthtalk-blendshape", preset="tiny",
                      data_root=f"{variants['main']},{variants['blendshape']}", overrides=QUICK)
    source = pipeline.run(mix, tracking_uri=uri, progress=False)
    trained = load_weights(source.train.checkpoint)

    # the body the fine-tune starts from is the mixture run's, whichever way the run is named
    tracker = tracking.Tracker(uri)
    for ref in (source.run_id, f"runs:/{source.run_id}/model", str(source.train.checkpoint)):
        cfg = _finetune_cfg(variants["topology2"], ref, 0.5)
        data = cfg.dataset.load()
        method = pipeline.build_method(weights_ref.with_local_weights(cfg, tracker), data.spec)
        method.prepare(data.split("train"))
        for key, value in _body(trained).items():
            assert torch.equal(method.state_dict()[key], value), (ref, key)
        pivot = trained["decoder.identity.weight"][-1:]
        assert torch.equal(method.decoder.identity.weight, pivot.repeat(method.n_identities, 1))
        assert not method.out_head_dict["synthtalk-topology2"].weight.any()  # the new head from zero
        assert cfg.method_config.finetune_head == ref  # the reference itself is what the run keeps

    # a run of another machine (no local run folder): its final weights come from the store, verified
    source.train.checkpoint.rename(tmp_path / "elsewhere.safetensors")
    fetched = weights_ref.local_file(source.run_id, tracker, "unitalker.finetune_head")
    assert "weights" in fetched and all(torch.equal(v, load_weights(fetched)[k]) for k, v in trained.items())

    result = pipeline.run(_finetune_cfg(variants["topology2"], source.run_id, 0.5), tracking_uri=uri,
                          progress=False)
    run = tracker.get_run(result.run_id)
    assert run.data.params["unitalker.finetune_head"] == source.run_id
    assert run.data.params["dataset.train_fraction"] == "0.5"
    assert run.data.tags[contract.Tag.TRAIN_CLIPS] == str(len(data.split("train")))
    assert np.isfinite(run.data.metrics["test/lve"])
    whole = _finetune_cfg(variants["topology2"], source.run_id, 1.0)
    assert whole.config_hash() != run.data.tags[contract.Tag.CONFIG_HASH]  # the share is in the identity


def test_a_new_head_from_a_bench_imported_release_file(tmp_path):
    from _paper_encoder import ENCODER
    from datasets_fakes import make_vocaset_like
    from test_import_cli import bench, encoder_set

    from talkbench.datasets.spec import DatasetSpec
    from talkbench.methods.unitalker import UniTalker
    from talkbench.methods.unitalker import official as ut_official
    from talkbench.methods.unitalker.release import load_body
    from talkbench.official_import import paper_config, paper_model

    torch.manual_seed(0)
    model = paper_model("unitalker", "paper-b", ["unitalker.n_identities=5"], encoder_overrides=ENCODER,
                        dataset="vocaset")
    with torch.no_grad():  # a trained-looking body: the identity table and the decoder not at init
        model.decoder.identity.weight.normal_(0, 1.0)
    path = ut_official.save_official(model.eval(), tmp_path / "UniTalker-B-D0-D7.pt")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    data = make_vocaset_like(tmp_path / "vocaset", seconds=1.0)
    out = bench("import", "--method", "unitalker", "--checkpoint", str(path), "--preset", "paper-b",
                "--dataset", "vocaset", "--data-root", str(data), "--set", encoder_set("unitalker"),
                "--tracking-uri", uri)
    assert out.exit_code == 0, out.output
    imported = out.stdout.split()[1]

    target = DatasetSpec(name="multiface", fps=30.0, n_vertices=12, splits={}, train_subjects=("x", "y"))
    tracker = tracking.Tracker(uri)
    for ref in (imported, str(path)):
        sets = [encoder_set("unitalker"), f"unitalker.finetune_head={ref}"]
        cfg = paper_config("unitalker", "paper-b", sets, dataset="vocaset")
        local = weights_ref.with_local_weights(cfg, tracker)
        tuned = UniTalker(local.method_config, target)
        load_body(tuned, local.method_config.finetune_head)  # what prepare() does first
        for key, value in _body(model.state_dict()).items():
            assert torch.equal(tuned.state_dict()[key], value), (ref, key)
        pivot = model.decoder.identity.weight[-1:]
        assert torch.equal(tuned.decoder.identity.weight, pivot.repeat(3, 1))

    with pytest.raises(TalkbenchError, match="unitalker.finetune_head 'no-such-run'"):
        weights_ref.with_local_weights(
            paper_config("unitalker", "paper-b", ["unitalker.finetune_head=no-such-run"], dataset="vocaset"),
            tracker)


def test_a_registry_reference_that_names_no_version_is_one_error_naming_the_option(tmp_path):
    tracker = tracking.Tracker(f"sqlite:///{tmp_path}/mlflow.db")
    for ref in ("models:/nope/1", "models:/nope@best"):
        message = rf"unitalker.finetune_head '{ref}' is not in the model registry"
        with pytest.raises(TalkbenchError, match=message):
            weights_ref.local_file(ref, tracker, "unitalker.finetune_head")
