"""Engine mechanics on a tiny dummy method: stages, freezing, logging, selection, schedules, clipping."""

from __future__ import annotations

import math
import re

import pytest
import torch
from _engine_support import ListLogger, MemoryData, build, dummy_config, forget_dummy, memory_loader

from talkbench import checkpoint as ckpt
from talkbench.engine import TrainResult, check_stages, resolve_device, resolve_precision, train
from talkbench.errors import ConfigError, TalkbenchError
from talkbench.methods.base import Stage


@pytest.fixture(scope="module", autouse=True)
def _unregister_dummy():
    yield
    forget_dummy()


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models: one intra-op thread is faster than two contended ones (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data():
    return MemoryData()


def _train(data, tmp_path, *overrides, logger=None, resume=False):
    cfg = dummy_config(*overrides)
    method = build(cfg, data)
    logger = logger if logger is not None else ListLogger()
    result = train(method, data, cfg, tmp_path, logger=logger, resume=resume, progress=False,
                   loader_factory=memory_loader)  # fmt: skip
    return method, logger, result


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """One full two-stage run shared by the read-only checks below."""
    run_dir = tmp_path_factory.mktemp("run")
    method, logger, result = _train(data, run_dir, "train.checkpoint_every=2")
    return method, logger, result, run_dir


def test_frozen_parameters_are_bit_identical_and_trainable_ones_move(trained):
    method, _, _, _ = trained
    (pre_name, pre_params, pre_grads), (fine_name, fine_params, fine_grads) = method.stage_log
    assert (pre_name, fine_name) == ("pre", "fine")
    assert all(pre_grads.values())  # 'pre' trains everything
    assert fine_grads == {n: n.startswith("head.") for n in fine_grads}  # 'fine' only the head
    final = dict(method.named_parameters())
    for name in ("encoder.weight", "encoder.bias"):
        assert torch.equal(final[name], fine_params[name]), f"{name} moved while frozen"
        assert not torch.equal(fine_params[name], pre_params[name]), f"{name} did not train in 'pre'"
    assert not torch.equal(final["head.weight"], fine_params["head.weight"])
    assert all(p.requires_grad for p in method.parameters())  # restored after training


def test_metrics_logged_per_stage_with_a_global_epoch_step(trained):
    _, logger, result, _ = trained
    steps = [s for s, _ in logger.metrics]
    assert steps == list(range(3 + 4))
    for step, metrics in logger.metrics:
        stage = "pre" if step < 3 else "fine"
        assert set(metrics) == {
            *(f"{stage}/{part}/{c}" for part in ("train", "val") for c in ("loss", "mse", "vel")),
            f"{stage}/lr",
        }
        # the total is the weighted sum of the components, averaged the same way
        tr = {k.split("/")[-1]: v for k, v in metrics.items() if "/train/" in k}
        assert tr["loss"] == pytest.approx(tr["mse"] + 0.1 * tr["vel"], rel=1e-5)
    first, last = logger.metrics[0][1]["pre/train/loss"], logger.metrics[2][1]["pre/train/loss"]
    assert last < first  # it learns
    assert isinstance(result, TrainResult) and set(result.stage_seconds) == {"pre", "fine"}
    assert result.final_metrics["fine/val/loss"] == logger.metrics[-1][1]["fine/val/loss"]


def test_step_schedule_halves_the_rate_every_two_epochs(trained):
    _, logger, _, _ = trained
    lrs = [m["fine/lr"] for s, m in logger.metrics if s >= 3]
    assert lrs == pytest.approx([0.02, 0.02, 0.01, 0.01])
    assert all(m["pre/lr"] == pytest.approx(0.02) for s, m in logger.metrics if s < 3)


def test_val_selection_keeps_the_best_validation_epoch(data, trained):
    method, logger, result, _ = trained
    vals = [m["fine/val/loss"] for s, m in logger.metrics if s >= 3]
    assert result.best_epochs["fine"] == vals.index(min(vals))
    assert result.selection == {"pre": "last", "fine": "val"}
    # the weights left in the model reproduce the best logged validation loss
    loader = memory_loader(data.split("val"), sampler="sequential", batch_size=2, shuffle=False)
    method.eval()
    total = n = 0.0
    with torch.no_grad():
        for batch in loader:
            total += float(method.validation_loss("fine", batch)["loss"]) * len(batch)
            n += len(batch)
    assert total / n == pytest.approx(min(vals), rel=1e-6)


def test_selection_never_reads_the_test_split(data, tmp_path):
    class Spy(MemoryData):
        def __init__(self):
            self.__dict__.update(data.__dict__)
            self.asked: list[str] = []

        def split(self, name):
            self.asked.append(name)
            return super().split(name)

    spy = Spy()
    cfg = dummy_config("dummy.pre_epochs=1", "dummy.fine_epochs=1")
    train(build(cfg, spy), spy, cfg, tmp_path, progress=False, loader_factory=memory_loader)
    assert "test" not in spy.asked and "val" in spy.asked


def test_checkpoints_at_stage_ends_and_every_n_epochs(trained):
    _, logger, result, run_dir = trained
    files = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert files == [
        "last.pt",
        "model.safetensors",
        "model.safetensors.sha256",
        "stage01-pre.pt",
        "stage02-fine.pt",
    ]
    last = ckpt.load(run_dir / "checkpoints" / "last.pt")
    assert (last.stage_index, last.epoch, last.batch, last.global_epoch) == (2, 0, 0, 7)
    assert result.checkpoint == run_dir / "checkpoints" / "model.safetensors"
    assert logger.artifacts == [str(result.checkpoint), f"{result.checkpoint}.sha256"]
    saved = ckpt.load_weights(result.checkpoint)  # safetensors, checked against its sha256
    state = trained[0].state_dict()
    assert saved.keys() == state.keys() and all(torch.equal(saved[k], state[k].cpu()) for k in state)


def test_final_weights_with_one_byte_changed_are_refused_naming_the_file(trained, tmp_path):
    import shutil

    _, _, result, _ = trained
    copy = tmp_path / result.checkpoint.name
    shutil.copyfile(result.checkpoint, copy)
    shutil.copyfile(f"{result.checkpoint}.sha256", f"{copy}.sha256")
    blob = bytearray(copy.read_bytes())
    blob[len(blob) - 3] ^= 0x01  # inside the last tensor's bytes: safetensors alone would not notice
    copy.write_bytes(bytes(blob))
    with pytest.raises(TalkbenchError, match=re.escape(f"{copy}: its sha256 differs")):
        ckpt.load_weights(copy)


def test_periodic_checkpoint_holds_the_full_training_state(data, tmp_path):
    cfg = dummy_config("train.checkpoint_every=2", "dummy.fine_epochs=0")
    method = build(cfg, data)
    grabbed = {}

    class Grab(ListLogger):
        def log_metrics(self, metrics, step):
            super().log_metrics(metrics, step)
            if step == 2:  # epoch index 1 wrote the periodic checkpoint; epoch 2 ends the stage
                grabbed["state"] = ckpt.load(tmp_path / "checkpoints" / "last.pt")

    train(method, data, cfg, tmp_path, logger=Grab(), progress=False, loader_factory=memory_loader)
    state = grabbed["state"]
    assert (state.stage_index, state.epoch, state.batch, state.global_epoch) == (0, 2, 0, 2)
    assert state.version == ckpt.VERSION and state.partial is None
    assert state.optimizer["state"]  # Adam moments travel with it
    assert set(state.rng_per_rank[0]) >= {"python", "numpy", "torch"}
    assert state.model.keys() == method.state_dict().keys()
    assert [s for s, _ in state.history] == [0, 1]
    boundary = ckpt.load(tmp_path / "checkpoints" / "stage01-pre.pt")
    assert boundary.optimizer is None and (boundary.stage_index, boundary.epoch) == (1, 0)


def test_gradient_clipping_is_applied(data, tmp_path):
    def fine_delta(clip):
        cfg = dummy_config("dummy.pre_epochs=0", "dummy.fine_epochs=1", f"dummy.grad_clip={clip}",
                           "dummy.fine_selection=last")  # fmt: skip
        method = build(cfg, data)
        before = method.head.weight.detach().clone()
        train(method, data, cfg, tmp_path / str(clip), progress=False, loader_factory=memory_loader)
        return float((method.head.weight.detach() - before).abs().max())

    # Adam is scale invariant, so only a clip far below eps shows: the update all but vanishes
    assert fine_delta(1e-14) < 0.02 * fine_delta(100.0)


def test_cosine_schedule(data, tmp_path):
    _, logger, _ = _train(data, tmp_path, "dummy.pre_epochs=0", "dummy.fine_schedule=cosine")
    lrs = [m["fine/lr"] for _, m in logger.metrics]
    expected = [0.01 * (1 + math.cos(math.pi * e / 4)) for e in range(4)]
    assert lrs == pytest.approx(expected)


def test_non_finite_loss_is_one_clear_error(data, tmp_path):
    with pytest.raises(TalkbenchError, match=r"stage 'pre', epoch 0: loss is nan"):
        _train(data, tmp_path, "dummy.nan_loss=true")


def test_bad_stage_settings_are_config_errors():
    good = Stage("a", 1, 0.1)
    check_stages([good], "m")
    for bad, word in [
        (Stage("a", 1, 0.1, optimizer="sgd"), "optimizer 'sgd'"),
        (Stage("a", 1, 0.1, schedule="poly"), "schedule 'poly'"),
        (Stage("a", 1, 0.1, sampler="random"), "sampler 'random'"),
        (Stage("a", 1, 0.1, selection="test"), "selection 'test'"),
        (Stage("a", 1, 0.0), "lr 0.0"),
    ]:
        with pytest.raises(ConfigError, match=word):
            check_stages([bad], "m")
    with pytest.raises(ConfigError, match="duplicate"):
        check_stages([good, good], "m")


def test_stage_matching_no_parameter_is_an_error(data, tmp_path):
    cfg = dummy_config()
    method = build(cfg, data)
    method.stages = lambda: [Stage("x", 1, 0.1, trainable=("decoder.",))]
    with pytest.raises(ConfigError, match=r"stage 'x': no parameter matches trainable \['decoder.'\]"):
        train(method, data, cfg, tmp_path, progress=False, loader_factory=memory_loader)


def test_device_and_precision_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("cuda", 0)) == "bf16"
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ConfigError, match="no CUDA device"):
            resolve_device("cuda")


def test_real_loader_on_synthtalk_tiny(synthtalk_tiny, tmp_path):
    """The default loader factory (talkbench.datasets.make_loader) on a generated SynthTalk dataset."""
    from talkbench.datasets import load_dataset

    ds = load_dataset("synthtalk", root=synthtalk_tiny)
    cfg = dummy_config("dummy.pre_epochs=2", "dummy.fine_epochs=1", "dummy.batch_size=4")
    method = build(cfg, ds)
    logger = ListLogger()
    result = train(method, ds, cfg, tmp_path, logger=logger, progress=False)
    assert [s for s, _ in logger.metrics] == [0, 1, 2]
    assert logger.metrics[1][1]["pre/train/loss"] < logger.metrics[0][1]["pre/train/loss"]
    assert all(math.isfinite(v) for v in result.final_metrics.values())
    clip = ds.split("test")[0]
    out = method.predict(torch.tensor(clip.audio), torch.tensor(clip.template))
    assert out.shape == clip.vertices.shape


def test_progress_bar_stays_silent_without_a_terminal(data, tmp_path, capfd):
    cfg = dummy_config("dummy.pre_epochs=1", "dummy.fine_epochs=1")
    train(build(cfg, data), data, cfg, tmp_path, progress=True, loader_factory=memory_loader)
    out, err = capfd.readouterr()
    assert "epochs" not in err and "━" not in err and out == ""


def test_bf16_autocast_is_active_in_losses_when_asked(data, tmp_path):
    """precision=bf16 runs losses under autocast (CPU here; on CUDA 'auto' picks it), fp32 does not."""

    def autocast_states(precision):
        cfg = dummy_config("dummy.pre_epochs=1", "dummy.fine_epochs=1", f"precision={precision}")
        method = build(cfg, data)
        states, original = [], method.loss

        def spy(stage, batch):
            states.append(torch.is_autocast_enabled("cpu"))
            out = original(stage, batch)
            states.append(out["mse"].dtype)
            return out

        method.loss = spy
        result = train(method, data, cfg, tmp_path / precision, progress=False, loader_factory=memory_loader)
        assert all(math.isfinite(v) for v in result.final_metrics.values())
        return result.precision, set(states)

    assert autocast_states("bf16") == ("bf16", {True, torch.float32})  # losses reduce in fp32
    assert autocast_states("fp32") == ("fp32", {False, torch.float32})


def test_log_every_and_selection_override(data, tmp_path):
    _, logger, result = _train(data, tmp_path, "train.log_every=2", "train.selection=last")
    # steps 1, 3, 5 by the cadence, plus each stage's last epoch (2 and 6)
    assert [s for s, _ in logger.metrics] == [1, 2, 3, 5, 6]
    assert len(result.history) == 7  # everything is still kept in the result
    assert result.selection == {"pre": "last", "fine": "last"} and result.best_epochs["fine"] == 3


def test_progress_on_a_terminal_shows_steps_and_the_running_loss(data, tmp_path, monkeypatch):
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    monkeypatch.setenv("COLUMNS", "160")
    cfg = dummy_config("dummy.pre_epochs=1", "dummy.fine_epochs=1")
    train(build(cfg, data), data, cfg, tmp_path, progress=True, loader_factory=memory_loader)
    text = screen.getvalue()
    assert "pre (1/2)" in text and "fine (2/2)" in text and "epochs" in text
    assert "epoch 1" in text and "5/5" in text and "steps" in text  # 5 batches of the epoch
    assert re.search(r"steps\s+loss \d", text)  # the running loss, not '-'
