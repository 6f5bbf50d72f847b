"""A checkpoint save with its checksum (checkpoint.save, BLAKE3) vs a plain save of the same state,
10M parameters + Adam (model, exp_avg, exp_avg_sq: ~120 MB), to a file in the same folder.

    .venv/bin/python -m pytest benchmarks/test_bench_checkpoint.py -p no:xdist --benchmark-only \
        -o addopts="" -s

`plain` = torch.save of the TrainState's dict straight to the file (no checksum, no fsync, no rename);
`plain-atomic` = checkpoint.atomic_save of it (fsync + rename, no checksum); `checksum` =
checkpoint.save (BLAKE3 of the bytes as they stream to the file, header + digest, fsync + rename).
Issue 27 asks `checksum` / `plain` <= 1.2; `checksum` / `plain-atomic` is the checksum's own cost. Each test
records its ratio to `plain` in extra_info and prints it.
"""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch

from talkbench import checkpoint as ckpt

MEDIAN: dict[str, float] = {}


@pytest.fixture(scope="module")
def state() -> ckpt.TrainState:
    torch.manual_seed(0)
    model = torch.nn.Sequential(*(torch.nn.Linear(1000, 1000) for _ in range(10)))  # 10.01M parameters
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 1000)).sum().backward()
    opt.step()
    return ckpt.TrainState(
        method="bench", fingerprint="f", config_hash="c", stage_index=0, epoch=1, global_epoch=1,
        model=model.state_dict(), rng_per_rank=[ckpt.capture_rng()], optimizer=opt.state_dict(),
    )  # fmt: skip


def _record(benchmark, name: str) -> None:
    MEDIAN[name] = benchmark.stats.stats.median
    if name != "plain" and "plain" in MEDIAN:
        ratio = MEDIAN[name] / MEDIAN["plain"]
        benchmark.extra_info["ratio_to_plain"] = round(ratio, 3)
        print(f"\n{name}: {ratio:.2f}x plain")


@pytest.mark.parametrize("kind", ["plain", "plain-atomic", "checksum"])
def test_checkpoint_save(benchmark, state, tmp_path, kind, one_thread):
    path = tmp_path / "last.pt"
    payload = asdict(state)
    save = {
        "plain": lambda: torch.save(payload, path),
        "plain-atomic": lambda: ckpt.atomic_save(payload, path),
        "checksum": lambda: ckpt.save(state, path),
    }[kind]
    benchmark.pedantic(save, rounds=7, warmup_rounds=1)
    _record(benchmark, kind)
    if kind == "checksum":
        assert ckpt.load(path).model.keys() == state.model.keys()
