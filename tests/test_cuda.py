"""CUDA checks: every learned method trains (bf16 autocast), predicts and evaluates on a GPU.

Skipped without CUDA; run on a GPU machine with `pytest -m cuda`.
"""

import math

import pytest
import torch

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("method", ["faceformer", "memorytalker", "codetalker", "codetalker-nd", "unitalker"])
def test_tiny_run_on_cuda_with_bf16(method, tmp_path):
    from talkbench import pipeline
    from talkbench.config import load_config
    from talkbench.tracking import Tracker

    cfg = load_config(method, preset="tiny", device="cuda", overrides=["precision=bf16"])
    result = pipeline.run(cfg, tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", progress=False)
    run = Tracker(f"sqlite:///{tmp_path}/mlflow.db").get_run(result.run_id)
    assert run.data.tags["talkbench.device"].startswith("cuda")
    assert all(math.isfinite(v) for k, v in result.metrics.items() if k.endswith(("lve", "mve")))
    assert result.inference_speed > 0
    # the speed profile times predict on the GPU (synchronised), the encoder share included
    speed = run.data.metrics
    assert speed["speed/rtf"] > 0 and speed["speed/first_frame_ms"] > 0
    assert 0 < speed["speed/encoder_share"] < 1


def test_cuda_and_cpu_predictions_agree_in_fp32(synthtalk_tiny):
    """The same weights give the same animation on both devices (fp32, eval mode)."""
    from talkbench.config import load_config
    from talkbench.datasets import load_dataset
    from talkbench.pipeline import build_method

    torch.manual_seed(0)
    data = load_dataset("synthtalk", root=synthtalk_tiny)
    cfg = load_config("memorytalker", preset="tiny")
    method = build_method(cfg, data.spec).eval()
    for p in method.parameters():  # leave the zero-initialised head: make the output non-trivial
        torch.nn.init.normal_(p, std=0.02)
    clip = data.split("test")[0]
    audio, template = torch.tensor(clip.audio), torch.tensor(clip.template)
    cpu = method.predict(audio, template)
    gpu = method.cuda().predict(audio.cuda(), template.cuda()).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-3, atol=1e-5)
