"""Every method predicts exactly the ground truth's frame count on SynthTalk (issue 12 point 9).

Untrained tiny configurations of the real architectures: the frame count depends on the audio length
and the dataset's frame rule only, not on the weights.
"""

from __future__ import annotations

import pytest
import torch

from talkbench.config import load_config
from talkbench.datasets.synthtalk_loader import load_synthtalk
from talkbench.registry import METHODS


@pytest.fixture(scope="module")
def synth(synthtalk_tiny):
    return load_synthtalk(synthtalk_tiny)


@pytest.mark.parametrize("name", ["template", "mean-motion", "faceformer", "memorytalker", "codetalker"])
def test_predictions_have_the_ground_truth_frame_count_on_synthtalk(synth, name):
    assert synth.spec.frame_rule == "samples"
    cfg = load_config(name, preset="tiny")
    torch.manual_seed(0)
    method = METHODS.get(name)(cfg.method_config, synth.spec).eval()
    train = list(synth.split("train"))
    method.prepare(train)
    clips = list(synth.split("test"))[:3] + train[:1]
    lengths = set()
    for clip in clips:
        audio, template = torch.tensor(clip.audio), torch.tensor(clip.template)
        cond = [0] if method.uses_speaker_id else [None]
        out = method.predict_conditions(audio, template, cond)
        assert out.shape == (1, clip.n_frames, synth.spec.n_vertices, 3), clip.name
        lengths.add(clip.n_frames)
    # the feature rule of the released code (int(S'/50*fps)) would give one frame fewer here
    one = clips[0]
    assert synth.spec.frames_for_samples(len(one.audio)) == one.n_frames
    s_feat = (len(one.audio) - 400) // 320 + 1
    assert int(s_feat / 50 * synth.spec.fps) == one.n_frames - 1
