"""Training on a mixture of datasets (issue 24.4): the sampler draws members by weight, seeded and
resumable; FaceFormer trains one head per member on SynthTalk + its second mesh and is scored on each
member's test split; learning-free methods keep their statistics per member; a method without heads
is refused; the leaderboard of each member tells the mixture-trained row from the single-dataset one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from talkbench import contract, tracking
from talkbench.cli import app
from talkbench.config import load_config
from talkbench.datasets.mixture import MixtureSampler, load_mixture
from talkbench.datasets.samplers import BucketedSampler, SequentialSampler
from talkbench.datasets.synthtalk import generate
from talkbench.errors import ConfigError

runner = CliRunner()
MIX = "synthtalk,synthtalk-topology2"


@pytest.fixture(scope="module")
def roots(tmp_path_factory, synthtalk_tiny):
    root = tmp_path_factory.mktemp("mixture")
    return {
        "synthtalk": synthtalk_tiny,
        "synthtalk-topology2": generate(root / "topology2", preset="tiny", seed=0, variant="topology2"),
        "synthtalk-blendshape": generate(root / "blendshape", preset="tiny", seed=0, variant="blendshape"),
    }


def _mixture(roots, members=("synthtalk", "synthtalk-topology2"), weights=None):
    return load_mixture(list(members), weights, [str(roots[m]) for m in members])


def _sampler(weights, seed=0, **kw):
    samplers = {"a": BucketedSampler(np.arange(40) % 7 + 5, 2, seed=seed),
                "b": SequentialSampler(np.full(12, 9), 3, seed=seed)}  # fmt: skip
    return MixtureSampler(samplers, weights, seed=seed, **kw)


# -- the sampler ----------------------------------------------------------------------------------
def test_member_proportions_follow_the_weights():
    sampler = _sampler({"a": 1.0, "b": 3.0})
    assert len(sampler) == 20 + 4  # one pass over every member per epoch
    drawn = []
    for epoch in range(100):
        sampler.set_epoch(epoch)
        drawn += [m for m, _ in sampler]
    share = drawn.count("b") / len(drawn)
    assert abs(share - 0.75) < 0.03, share  # 2400 draws: 3 standard errors ~ 0.026
    sampler = _sampler({"a": 1.0, "b": 0.0})
    assert {m for m, _ in sampler} == {"a"}


def test_repeats_add_passes_over_a_member_and_scale_its_draws():
    sampler = _sampler({"a": 1.0, "b": 1.0}, repeats={"b": 3})
    assert len(sampler) == 20 + 3 * 4  # b's clips three times per epoch, as if concatenated thrice
    drawn = []
    for epoch in range(100):
        sampler.set_epoch(epoch)
        drawn += [m for m, _ in sampler]
    share = drawn.count("b") / len(drawn)
    assert abs(share - 0.75) < 0.03, share  # weight 1 x 3 passes against 1 x 1
    with pytest.raises(ConfigError, match="repeats for c: not members"):
        _sampler({"a": 1.0, "b": 1.0}, repeats={"c": 2})


def test_schedule_is_seeded_resumable_and_passes_over_each_member():
    one, two = _sampler({"a": 1.0, "b": 2.0}), _sampler({"a": 1.0, "b": 2.0})
    one.set_epoch(3)
    two.set_epoch(3)
    first = list(one)
    assert first == list(two) == list(one)  # a pure function of (seed, epoch): resume replays it
    two.set_epoch(4)
    assert list(two) != first
    assert list(_sampler({"a": 1.0, "b": 2.0}, seed=1)) != list(_sampler({"a": 1.0, "b": 2.0}))
    # b is drawn more often than its 4 batches: each pass covers its 12 clips once, then a new order
    b = [idx for m, idx in first if m == "b"]
    assert len(b) > 4
    assert sorted(i for batch in b[:4] for i in batch) == list(range(12))
    assert b[:4] != b[4:8] or len(b) < 8
    # a member's pass k > 0 is a new order; pass 0 is the sampler's own epoch order
    plain = BucketedSampler(np.arange(40) % 7 + 5, 2, seed=0)
    plain.set_epoch(3)
    own = list(plain)
    plain.set_epoch(3, cycle=0)
    assert list(plain) == own
    plain.set_epoch(3, cycle=1)
    assert list(plain) != own


def test_ranks_split_the_global_schedule():
    full = list(_sampler({"a": 1.0, "b": 1.0}))
    shards = [list(_sampler({"a": 1.0, "b": 1.0}, rank=r, world_size=2)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == len(_sampler({"a": 1.0, "b": 1.0}, rank=0, world_size=2))
    assert [x for pair in zip(*shards) for x in pair] == full


# -- data, config ---------------------------------------------------------------------------------
def test_batches_come_from_one_member_with_its_own_speakers(roots):
    from talkbench.datasets import make_loader

    data = _mixture(roots, weights=[1, 2])
    spec = data.spec
    assert list(spec.members) == ["synthtalk", "synthtalk-topology2"]
    assert spec.weights == {"synthtalk": 1.0, "synthtalk-topology2": 2.0}
    n = {m: s.n_vertices for m, s in spec.members.items()}
    assert n["synthtalk"] != n["synthtalk-topology2"]
    loader = make_loader(data.split("train"), batch_size=2, seed=0)
    seen = set()
    for batch in loader:
        member = spec.members[batch.dataset]
        assert batch.vertices.shape[2] == n[batch.dataset]
        assert [member.train_subjects[k] for k in batch.speaker.tolist()] == batch.subjects
        seen.add(batch.dataset)
    assert seen == set(n) and len(loader) == sum(len(v) for v in loader.sampler.samplers.values())
    assert spec.speaker_offset("synthtalk-topology2") == len(spec.members["synthtalk"].train_subjects)


def test_config_of_a_mixture_and_its_errors():
    cfg = load_config("faceformer", dataset="synthtalk+synthtalk-topology2", preset="tiny",
                      overrides=["dataset.weights=[1,2]"])  # fmt: skip
    assert cfg.dataset.name == MIX and cfg.dataset.experiment == "synthtalk+synthtalk-topology2"
    assert cfg.dataset.members == ["synthtalk", "synthtalk-topology2"] and cfg.dataset.weights == [1, 2]
    assert cfg.preset == "tiny" and load_config("faceformer", dataset=MIX).preset == "synthtalk"
    single = load_config("faceformer", dataset="synthtalk", preset="tiny")
    assert cfg.config_hash() != single.config_hash()
    with pytest.raises(ConfigError, match="dataset.weights: 3 weight.*synthtalk, synthtalk-topology2"):
        load_config("faceformer", dataset=MIX, overrides=["dataset.weights=[1,2,3]"])
    with pytest.raises(ConfigError, match="dataset.weights: sampling weights are for a mixture"):
        load_config("faceformer", dataset="synthtalk", overrides=["dataset.weights=[1]"])
    with pytest.raises(ConfigError, match="--preset"):
        load_config("faceformer", dataset="synthtalk,vocaset")


# -- methods --------------------------------------------------------------------------------------
def test_faceformer_has_a_head_per_member_and_target(roots):
    from talkbench.pipeline import build_method

    members = ("synthtalk", "synthtalk-topology2", "synthtalk-blendshape")
    data = _mixture(roots, members)
    cfg = load_config("faceformer", dataset=",".join(members), preset="tiny")
    model = build_method(cfg, data.spec)
    specs = data.spec.members
    d = cfg.method_config.feature_dim
    v1, v2 = (specs[m].n_vertices for m in members[:2])
    assert model.vertice_map["synthtalk"].weight.shape == (d, 3 * v1)
    assert model.vertice_map_r["synthtalk-topology2"].weight.shape == (3 * v2, d)
    assert model.vertice_map_r["synthtalk-blendshape"].out_features == len(specs[members[2]].channels)
    assert model.obj_vector.in_features == len(data.spec.train_subjects)
    from talkbench.datasets import make_loader

    loader = make_loader(data.split("train"), batch_size=2)
    batch = next(b for b in loader if b.dataset == "synthtalk-blendshape")
    model.train()
    model.loss("train", batch)["loss"].backward()
    grads = {m: model.vertice_map_r[m].weight.grad for m in members}
    assert grads["synthtalk-blendshape"] is not None and grads["synthtalk"] is None  # its own head only
    with model.member("synthtalk-topology2"):
        clip = data.members["synthtalk-topology2"].split("test")[0]
        audio, template = torch.tensor(clip.audio), torch.tensor(clip.template)
        out = model.predict_conditions(audio, template, [0, 1])
        assert out.shape == (2, clip.n_frames, specs["synthtalk-topology2"].n_vertices, 3)
        assert model.spec is specs["synthtalk-topology2"]
    assert model.spec is data.spec
    with pytest.raises(Exception, match="which member"):
        model.predict(audio, template, 0)


def test_a_method_without_heads_is_refused(roots, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    res = _run(uri, "memorytalker", check=False)
    assert res.exit_code != 0
    assert "method 'memorytalker' cannot train on a mixture of datasets (synthtalk, synthtalk-topology2)" in (
        res.output
    )
    assert "faceformer" in res.output and "mean-motion" in res.output  # the ones that can
    assert tracking.Tracker(uri).search_runs("synthtalk+synthtalk-topology2").empty  # no run made


def test_mean_motion_on_a_mixture_equals_it_on_each_member(roots, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    _run(uri, "mean-motion", roots)
    mixed = tracking.Tracker(uri).search_runs("synthtalk+synthtalk-topology2").iloc[0]
    for member in ("synthtalk", "synthtalk-topology2"):
        res = runner.invoke(app, ["run", "--method", "mean-motion", "--dataset", member, "--data-root",
                                  str(roots[member]), "--tracking-uri", uri, "--no-progress",
                                  "--no-leaderboard"])  # fmt: skip
        assert res.exit_code == 0, res.output
        alone = tracking.Tracker(uri).search_runs(member).iloc[0]
        for metric in ("lve", "mve", "fdd"):
            key = contract.metric_column(contract.test_metric(metric))
            mine = contract.metric_column(contract.for_member(contract.test_metric(metric), member))
            assert mixed[mine] == alone[key]  # statistics of that member alone, bit for bit


# -- end to end -----------------------------------------------------------------------------------
def _run(uri, method, roots=None, *extra, check=True):
    args = ["run", "--method", method, "--dataset", MIX, "--preset", "tiny", "--set", "dataset.weights=[1,2]",
            "--tracking-uri", uri, "--no-progress", *extra]  # fmt: skip
    if roots is not None:
        args += ["--data-root", f"{roots['synthtalk']},{roots['synthtalk-topology2']}"]
    res = runner.invoke(app, args)
    if check:
        assert res.exit_code == 0, res.output
    return res


def test_faceformer_trains_on_a_mixture_and_is_scored_per_member(roots, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    res = _run(uri, "faceformer", roots, "--set", "faceformer.epochs=1")
    # printed on each member's board (rich may wrap the label)
    out = res.output
    assert out.count("Leaderboard: synthtalk") == 2 and out.count("(trained on synthtalk×1") == 2
    tracker = tracking.Tracker(uri)
    run = tracker.search_runs("synthtalk+synthtalk-topology2").iloc[0]
    assert run[contract.column(contract.Tag.MIXTURE)] == "synthtalk=1,synthtalk-topology2=2"
    assert run[contract.column(contract.Tag.DATASET)] == "synthtalk+synthtalk-topology2"
    data = _mixture(roots)
    for member, spec in data.spec.members.items():
        for metric in ("lve", "mve", "fdd"):
            value = run[contract.metric_column(contract.for_member(contract.test_metric(metric), member))]
            assert np.isfinite(value)
        assert run[contract.column(contract.for_member(contract.Tag.REGION_DIGEST, member))] == (
            spec.region_digest()
        )
    assert contract.metric_column(contract.test_metric("lve")) not in run or np.isnan(run["metrics.test/lve"])
    arts = {a.path for a in tracker.client.list_artifacts(run["run_id"], "eval")}
    assert arts == {"eval/synthtalk", "eval/synthtalk-topology2"}
    inputs = tracker.client.get_run(run["run_id"]).inputs.dataset_inputs
    assert {i.dataset.name for i in inputs} == {"synthtalk", "synthtalk-topology2"}

    # beside a FaceFormer trained on synthtalk alone: two rows, the mixture's labelled as such
    res = runner.invoke(app, ["run", "--method", "faceformer", "--dataset", "synthtalk", "--data-root",
                              str(roots["synthtalk"]), "--preset", "tiny", "--set", "faceformer.epochs=1",
                              "--tracking-uri", uri, "--no-progress", "--no-leaderboard"])  # fmt: skip
    assert res.exit_code == 0, res.output
    from talkbench.reports.leaderboard import leaderboard

    board = leaderboard("synthtalk", tracking_uri=uri)
    labels = sorted(r.label for r in board.rows)
    assert labels == ["faceformer", "faceformer (trained on synthtalk×1 + synthtalk-topology2×2)"]
    mixed = next(r for r in board.rows if r.mixture)
    lve = run[contract.metric_column(contract.for_member(contract.test_metric("lve"), "synthtalk"))]
    assert mixed.values["lve"][0] == lve and "lve" in mixed.estimates  # its per-sequence table read
    rtf = run[contract.metric_column(contract.for_member(contract.speed_metric("rtf"), "synthtalk"))]
    assert mixed.speed["rtf"] == rtf  # and its speed on the member (--columns speed)
    with pytest.raises(ConfigError, match="each member's board"):
        leaderboard("synthtalk+synthtalk-topology2", tracking_uri=uri)

    # the report has the mixture's row too: its cell and CI as on the board, its clips in the viewer
    from talkbench.reports.report import build_report

    report = build_report("synthtalk", out_dir=tmp_path / "report", tracking_uri=uri, log_to_runs=False)
    md = report.markdown.read_text()
    label = "faceformer (trained on synthtalk×1 + synthtalk-topology2×2)"
    board_part = md.split("## Leaderboard", 1)[1]
    line = next(x for x in board_part.splitlines() if f"| {label} |" in x)
    assert f"| {lve / 1e-5:.3f} (no CI: one seed) |" in line  # the member's LVE, its table read
    assert f"`{run['run_id'][:8]}` | {label} |" in md  # and its provenance
    assert run["run_id"] in report.run_ids
    shown = sorted((tmp_path / "report" / "viewer" / "data").glob(f"*/{run['run_id']}.js"))
    assert len(shown) == 3  # its predictions of the member's shown clips, in the viewer


def test_mixture_training_interrupted_mid_epoch_resumes_bit_identical(roots, tmp_path):
    import os
    import signal

    from talkbench.engine import train
    from talkbench.errors import Interrupted
    from talkbench.pipeline import build_method

    both = f"{roots['synthtalk']},{roots['synthtalk-topology2']}"
    sets = ["dataset.weights=[1,2]", "faceformer.epochs=2", "train.checkpoint_every=1"]
    cfg = load_config("faceformer", dataset=MIX, preset="tiny", data_root=both, overrides=sets)
    data = cfg.dataset.load()
    straight = build_method(cfg, data.spec)
    train(straight, data, cfg, tmp_path / "straight", progress=False)

    killed = build_method(cfg, data.spec)
    steps, loss = [], killed.loss

    def interrupting(stage, batch):  # Ctrl-C during the 4th step of the first epoch
        steps.append(batch.dataset)
        if len(steps) == 4:
            os.kill(os.getpid(), signal.SIGINT)
        return loss(stage, batch)

    killed.loss = interrupting
    with pytest.raises(Interrupted):
        train(killed, data, cfg, tmp_path / "killed", progress=False)
    assert len(steps) == 4  # stopped after the step it was in, mid-epoch
    resumed = build_method(cfg, data.spec)
    train(resumed, data, cfg, tmp_path / "killed", resume=True, progress=False)
    reference = straight.state_dict()
    for key, value in resumed.state_dict().items():
        assert torch.equal(value, reference[key]), key


# -- UniTalker: a head and basis per member, one identity table --------------------------------------
def test_unitalker_has_a_head_and_basis_per_member_and_routes_each_batch(roots):
    from talkbench.datasets import make_loader
    from talkbench.pipeline import build_method

    members = ("synthtalk", "synthtalk-topology2", "synthtalk-blendshape")
    data = _mixture(roots, members)
    cfg = load_config("unitalker", dataset=",".join(members), preset="tiny")
    model = build_method(cfg, data.spec)
    specs, c = data.spec.members, cfg.method_config
    for m in members[:2]:
        k = min(c.pca_dim, 3 * specs[m].n_vertices)
        assert model.out_head_dict[m].weight.shape == (k, c.decoder_dim)
        assert model.pca_layer_dict[m].feat_to_data.shape == (k, 3 * specs[m].n_vertices)
    assert model.out_head_dict["synthtalk-blendshape"].out_features == len(specs[members[2]].channels)
    assert "synthtalk-blendshape" not in model.pca_layer_dict  # weights are predicted directly
    assert model.n_identities == len(data.spec.train_subjects) + 1  # every member's speakers + the pivot
    with pytest.raises(ConfigError, match="unitalker.duplicate names D0: not members"):
        build_method(load_config("unitalker", dataset=",".join(members), preset="tiny",
                                 overrides=["unitalker.duplicate={D0: 2}"]), data.spec)  # fmt: skip
    model.prepare(data.split("train"))
    for m in members[:2]:  # each basis fitted on its own member's offsets
        alone = build_method(load_config("unitalker", dataset=m, preset="tiny"), specs[m])
        alone.prepare(data.members[m].split("train"))
        assert torch.equal(model.pca_layer_dict[m].feat_to_data, alone.pca_layer_dict[m].feat_to_data)

    loader = make_loader(data.split("train"), batch_size=2)
    dup_cfg = load_config("unitalker", dataset=",".join(members), preset="tiny",
                          overrides=["unitalker.duplicate={synthtalk-topology2: 2}"])  # fmt: skip
    repeats = build_method(dup_cfg, data.spec).stages()[-1].repeats  # the trainer hands them to the loader
    second_pass = make_loader(data.members["synthtalk-topology2"].split("train"), batch_size=2)
    duplicated = make_loader(data.split("train"), batch_size=2, repeats=repeats)
    assert len(duplicated) == len(loader) + len(second_pass)
    batch = next(b for b in loader if b.dataset == "synthtalk-topology2")
    model.train()
    model.config.pivot_prob = 0.0
    with model.member("synthtalk-topology2"):
        rows = model.identities(batch.speaker)
    assert torch.equal(rows, batch.speaker + data.spec.speaker_offset("synthtalk-topology2"))
    model.loss("train", batch)["loss"].backward()
    grads = {m: model.out_head_dict[m].weight.grad for m in members}
    assert grads["synthtalk-topology2"] is not None and grads["synthtalk-topology2"].abs().sum() > 0
    assert grads["synthtalk"] is None and grads["synthtalk-blendshape"] is None  # no gradient to others

    model.eval()
    clip = data.members["synthtalk-blendshape"].split("test")[0]
    audio, template = torch.tensor(clip.audio), torch.tensor(clip.template)
    with model.member("synthtalk-blendshape"):
        out = model.predict_conditions(audio, template, [None, 0])
        assert out.shape == (2, clip.n_frames, len(specs["synthtalk-blendshape"].channels))
        assert model.spec is specs["synthtalk-blendshape"]
    assert model.spec is data.spec
    with pytest.raises(Exception, match="which member"):
        model.predict(audio, template)


def test_unitalker_trains_on_three_members_and_is_scored_on_each(roots, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    members = ("synthtalk", "synthtalk-topology2", "synthtalk-blendshape")
    res = runner.invoke(app, ["run", "--method", "unitalker", "--dataset", ",".join(members),
                              "--set", "unitalker.duplicate={synthtalk-topology2: 2}", "--preset", "tiny",
                              "--data-root", ",".join(str(roots[m]) for m in members),
                              "--tracking-uri", uri, "--no-progress", "--no-leaderboard"])  # fmt: skip
    assert res.exit_code == 0, res.output
    run = tracking.Tracker(uri).search_runs("+".join(members)).iloc[0]
    for member in members:
        lve = run[contract.metric_column(contract.for_member(contract.test_metric("lve"), member))]
        assert np.isfinite(lve) and lve > 0
