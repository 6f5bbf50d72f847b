"""SIGINT/SIGTERM during training: a resumable checkpoint at the next step boundary, Interrupted, and a
resume that ends bit-identical to an uninterrupted run; a second signal stops at once."""

from __future__ import annotations

import os
import signal
import threading

import pytest
import torch
from _engine_support import MemoryData, build, dummy_config, forget_dummy, memory_loader

from talkbench import checkpoint as ckpt
from talkbench.engine import train
from talkbench.errors import Interrupted

SETS = ("dummy.pre_epochs=2", "dummy.fine_epochs=3", "train.checkpoint_every=0")


@pytest.fixture(scope="module", autouse=True)
def _unregister_dummy():
    yield
    forget_dummy()


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data():
    return MemoryData()


def _job(data, run_dir, resume=False, signals_at=(), sig=signal.SIGINT, factory=memory_loader, sets=SETS):
    """Train; send ``sig`` to this process during the training steps numbered in ``signals_at``."""
    cfg = dummy_config(*sets)
    method = build(cfg, data)
    original, calls = method.loss, [0]

    def loss(stage, batch):
        if method.training:
            calls[0] += 1
            for _ in range(signals_at.count(calls[0])):
                os.kill(os.getpid(), sig)
        return original(stage, batch)

    method.loss = loss
    result = train(method, data, cfg, run_dir, resume=resume, progress=False, loader_factory=factory)
    return method, result


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    return _job(data, tmp_path_factory.mktemp("straight"))


def _same_weights(a, b):
    assert a.state_dict().keys() == b.state_dict().keys()
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), f"{key} differs after resume"


# 5 clips of 2 speakers = 5 batches of 2 per epoch: step 7 is mid-epoch 1 of 'pre' (all parameters),
# 13 mid-epoch 0 of 'fine' (a new optimizer, val selection), 10 the last step of 'pre' (stage end)
@pytest.mark.parametrize(("sig", "step"), [(signal.SIGINT, 7), (signal.SIGTERM, 13), (signal.SIGINT, 10)])
def test_signal_saves_at_the_next_step_and_resume_is_bit_identical(data, tmp_path, straight, sig, step):
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as info:
        _job(data, tmp_path, signals_at=(step,), sig=sig)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before  # restored
    exc = info.value
    assert exc.signal_name == signal.Signals(sig).name
    assert exc.checkpoint == str(tmp_path / "checkpoints" / ckpt.LAST)
    state = ckpt.load(exc.checkpoint)
    steps_per_epoch = 5
    epoch, batch = divmod(step, steps_per_epoch)
    if batch:  # mid-epoch: the position is the batch after the one that was running
        assert (state.epoch, state.batch) == (epoch % 2 if step < 10 else epoch - 2, batch)
        assert state.partial is not None and state.partial[0]["count"] == 2 * batch
    assert exc.epoch == state.global_epoch
    method, result = _job(data, tmp_path, resume=True)
    _same_weights(method, straight[0])
    assert result.history == straight[1].history  # every epoch's losses, the interrupted one included
    assert result.best_epochs == straight[1].best_epochs


def test_a_second_signal_stops_at_once_without_a_checkpoint(data, tmp_path):
    before = signal.getsignal(signal.SIGINT)  # not always Python's default: nohup'd jobs ignore SIGINT
    with pytest.raises(KeyboardInterrupt) as info:
        _job(data, tmp_path, signals_at=(3, 3))
    assert type(info.value) is KeyboardInterrupt  # not Interrupted: nothing was saved
    assert not (tmp_path / "checkpoints" / ckpt.LAST).exists()
    assert signal.getsignal(signal.SIGINT) == before  # restored


def test_training_in_another_thread_installs_no_handler(data, tmp_path):
    out = {}
    thread = threading.Thread(target=lambda: out.update(r=_job(data, tmp_path)[1]))
    thread.start()
    thread.join(120)
    assert out["r"].checkpoint is not None  # signal.signal would have raised outside the main thread


def test_real_loader_mid_epoch_resume_is_bit_identical(synthtalk_tiny, tmp_path):
    """make_loader's DataLoader draws a seed from the global generator when an epoch starts: the resume
    replays the batches before restoring the generators, as the interrupted run had them."""
    from talkbench.datasets import load_dataset, make_loader

    ds = load_dataset("synthtalk", root=synthtalk_tiny)
    sets = ("dummy.pre_epochs=2", "dummy.fine_epochs=1", "dummy.batch_size=4", "train.checkpoint_every=0")
    ref, _ = _job(ds, tmp_path / "straight", factory=make_loader, sets=sets)
    with pytest.raises(Interrupted):
        _job(ds, tmp_path / "killed", signals_at=(8,), factory=make_loader, sets=sets)
    assert ckpt.load(tmp_path / "killed" / "checkpoints" / ckpt.LAST).batch > 0
    resumed, _ = _job(ds, tmp_path / "killed", resume=True, factory=make_loader, sets=sets)
    _same_weights(resumed, ref)
