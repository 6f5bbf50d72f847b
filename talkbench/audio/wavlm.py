"""WavLM: base-plus (UniTalker-B)."""

from __future__ import annotations

from talkbench.audio.huggingface import Family, HFSpeechEncoder

WAVLM = Family(
    kind="wavlm",
    model_class="WavLMModel",
    ctc_class="WavLMForCTC",
    checkpoints={"microsoft/wavlm-base-plus": "base-plus, self-supervised on 94k h; UniTalker-B"},
)


class WavLMEncoder(HFSpeechEncoder):
    family = WAVLM
