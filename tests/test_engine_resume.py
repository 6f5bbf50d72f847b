"""Resume: a run SIGKILLed mid-stage and resumed ends bit-identical to an uninterrupted one (CPU);
corrupt or mismatched checkpoints are one clear error."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _engine_support import MemoryData, build, dummy_config, forget_dummy, memory_loader

from talkbench.engine import train
from talkbench.errors import ConfigError, TalkbenchError

SUPPORT = Path(__file__).with_name("_engine_support.py")
SETS = ["set=train.checkpoint_every=2", "set=dummy.pre_epochs=3", "set=dummy.fine_epochs=4"]


@pytest.fixture(scope="module", autouse=True)
def _unregister_dummy():
    yield
    forget_dummy()


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SUPPORT), *args], env=env, capture_output=True, text=True,
                          timeout=240)  # fmt: skip


def test_sigkill_mid_stage_then_resume_is_bit_identical(tmp_path):
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    # global epochs 0-2 are 'pre', 3-6 'fine'; 'fine' checkpoints after its 2nd epoch (global 4);
    # the process dies at global epoch 5, mid-stage, with unsaved progress after that checkpoint
    proc = _run(str(killed), str(tmp_path / "never.pt"), "kill=5", *SETS)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not (tmp_path / "never.pt").exists()
    proc = _run(str(killed), str(tmp_path / "resumed.pt"), "resume", *SETS, "--",
                str(straight), str(tmp_path / "straight.pt"), *SETS)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    resumed = torch.load(tmp_path / "resumed.pt", weights_only=False)
    reference = torch.load(tmp_path / "straight.pt", weights_only=False)
    assert resumed["resumed_from"] == 5 and reference["resumed_from"] is None
    assert resumed["state"].keys() == reference["state"].keys()
    for key, value in reference["state"].items():
        assert torch.equal(resumed["state"][key], value), f"{key} differs after resume"
    assert resumed["best_epochs"] == reference["best_epochs"]
    assert resumed["history"] == reference["history"]  # every epoch's losses, exactly
    for a, b in zip(resumed["predictions"], reference["predictions"]):
        assert torch.equal(a, b)  # hence identical test metrics
    # the killed run logged epochs 0-5; the resumed one re-ran only 5 and 6
    logged = [line.split(",")[0] for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert logged == ["[0", "[1", "[2", "[3", "[4", "[5", "[5", "[6"]


@pytest.fixture(scope="module")
def data():
    return MemoryData()


def _resume(data, run_dir, *sets):
    cfg = dummy_config("dummy.pre_epochs=1", "dummy.fine_epochs=1", *sets)
    method = build(cfg, data)
    return train(method, data, cfg, run_dir, resume=True, progress=False, loader_factory=memory_loader)


def _fresh(data, run_dir, *sets):
    cfg = dummy_config("dummy.pre_epochs=1", "dummy.fine_epochs=1", *sets)
    return train(build(cfg, data), data, cfg, run_dir, progress=False, loader_factory=memory_loader)


def test_resume_without_a_checkpoint_says_there_is_nothing_to_resume(data, tmp_path):
    partial = tmp_path / "checkpoints" / ".last.pt.tmp-12345"  # a write cut short by SIGKILL
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"half a checkpoint")
    with pytest.raises(TalkbenchError, match=r"nothing to resume: no checkpoint in .*without --resume"):
        _resume(data, tmp_path)
    assert not partial.exists()
    result = _fresh(data, tmp_path)
    assert result.resumed_from is None and (tmp_path / "checkpoints" / "last.pt").exists()
    # resuming a finished run does no more training and keeps its bookkeeping
    again = _resume(data, tmp_path)
    assert again.resumed_from == 2 and again.history == result.history


@pytest.mark.parametrize("damage", ["garbage", "truncated", "foreign"])
def test_corrupt_checkpoint_is_one_clear_error(data, tmp_path, damage):
    _fresh(data, tmp_path)
    last = tmp_path / "checkpoints" / "last.pt"
    blob = last.read_bytes()
    last.unlink()  # it is a hard link to the stage checkpoint: break the link, damage only last.pt
    if damage == "garbage":
        last.write_bytes(b"not a checkpoint at all")
    elif damage == "truncated":
        last.write_bytes(blob[: len(blob) // 2])
    else:
        torch.save({"weights": torch.zeros(3)}, last)
    with pytest.raises(TalkbenchError, match=rf"checkpoint {last} is .*(corrupt|not a talkbench).*--resume"):
        _resume(data, tmp_path)


def test_resume_with_a_different_config_is_refused(data, tmp_path):
    _fresh(data, tmp_path)
    with pytest.raises(ConfigError, match="other training settings"):
        _resume(data, tmp_path, "dummy.lr=0.5")
    with pytest.raises(ConfigError, match="other training settings"):
        _resume(data, tmp_path, "train.selection=val")
    # settings that do not shape the weights may change on resume
    assert _resume(
        data, tmp_path, "eval.n_boot=10", "train.log_every=3", "train.checkpoint_every=1"
    ).resumed_from


def test_one_byte_changed_anywhere_in_a_checkpoint_is_refused(data, tmp_path):
    """Issue 17.1 / 27.1: torch.load does not check member CRCs (400 damaged bytes inside a tensor used
    to resume silently); the checksum covers every byte after the header, the header is checked too."""
    from talkbench import checkpoint as ckpt

    _fresh(data, tmp_path, "dummy.hidden=256")  # a model large enough to have a long tensor region
    last = tmp_path / "checkpoints" / "last.pt"
    blob = last.read_bytes()
    last.unlink()
    assert len(blob) > 20_000
    header = len(ckpt.MAGIC)
    positions = [0, header - 1, header + 5, *range(60, len(blob), len(blob) // 97), len(blob) - 1]
    for at in positions:
        damaged = bytearray(blob)
        damaged[at] ^= 0x01
        last.write_bytes(bytes(damaged))
        with pytest.raises(TalkbenchError, match=rf"checkpoint {last} is (corrupt|not a talkbench)"):
            ckpt.load(last)
    with pytest.raises(TalkbenchError, match=rf"checkpoint {last} is corrupt .*checksum.*--resume"):
        _resume(data, tmp_path, "dummy.hidden=256")


def test_version_3_checkpoints_are_read_and_verified(data, tmp_path):
    """Format 3 (the header with a sha256 instead of BLAKE3) still resumes; damage is refused."""
    import hashlib
    import io
    from dataclasses import asdict

    from talkbench import checkpoint as ckpt

    result = _fresh(data, tmp_path)
    last = tmp_path / "checkpoints" / "last.pt"
    buf = io.BytesIO()
    torch.save(asdict(ckpt.load(last)), buf)
    blob = buf.getvalue()
    last.write_bytes(b"talkbench-ckpt3\n" + hashlib.sha256(blob).digest() + blob)
    assert _resume(data, tmp_path).history == result.history
    damaged = bytearray(last.read_bytes())
    damaged[len(damaged) // 2] ^= 1
    last.write_bytes(bytes(damaged))
    with pytest.raises(TalkbenchError, match=rf"checkpoint {last} is corrupt .*checksum"):
        _resume(data, tmp_path)


def test_version_2_checkpoints_are_read_and_verified(data, tmp_path):
    """Format 2 (a torch archive holding the payload and its sha256) still resumes; damage is refused."""
    import hashlib
    import io
    from dataclasses import asdict

    from talkbench import checkpoint as ckpt

    result = _fresh(data, tmp_path)
    last = tmp_path / "checkpoints" / "last.pt"
    state = ckpt.load(last)
    last.unlink()
    buf = io.BytesIO()
    torch.save(asdict(state), buf)
    payload = torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)
    sha = hashlib.sha256(buf.getvalue()).hexdigest()
    torch.save({"format": ckpt.FORMAT, "version": 2, "sha256": sha, "payload": payload}, last)
    assert _resume(data, tmp_path).history == result.history
    payload[len(payload) // 2] ^= 1
    torch.save({"format": ckpt.FORMAT, "version": 2, "sha256": sha, "payload": payload}, last)
    with pytest.raises(TalkbenchError, match=rf"checkpoint {last} is corrupt .*checksum"):
        _resume(data, tmp_path)


def test_old_format_checkpoints_are_read_and_verified(data, tmp_path):
    """Format 1 (talkbench 0.1, a plain dict) still resumes; damage shows through the members' CRCs."""
    from talkbench import checkpoint as ckpt

    result = _fresh(data, tmp_path)
    last = tmp_path / "checkpoints" / "last.pt"
    state = ckpt.load(last)
    last.unlink()
    old = {"format": ckpt.FORMAT, "version": 1, "method": state.method, "config_hash": state.config_hash,
           "fingerprint": state.fingerprint, "seed": 0, "stage_index": state.stage_index, "epoch": 0,
           "global_epoch": state.global_epoch, "sampler_epoch": 0, "model": state.model, "optimizer": None,
           "scheduler": None, "best": None, "rng": state.rng_per_rank[0], "rng_per_rank": state.rng_per_rank,
           "history": state.history, "stage_seconds": state.stage_seconds, "best_epochs": state.best_epochs,
           "selection": state.selection}  # fmt: skip
    torch.save(old, last)
    assert _resume(data, tmp_path).history == result.history
    blob = bytearray(last.read_bytes())
    at = blob.find(b"PK\x03\x04", len(blob) // 3)
    blob[at + 200 : at + 210] = b"\xff" * 10
    last.write_bytes(bytes(blob))
    with pytest.raises(TalkbenchError, match=rf"checkpoint {last} is corrupt"):
        _resume(data, tmp_path)
