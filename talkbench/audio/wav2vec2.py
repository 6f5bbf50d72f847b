"""wav2vec2: base-960h (FaceFormer, CodeTalker), large-xlsr-53
(SelfTalk's encoder and recogniser, UniTalker-L)."""

from __future__ import annotations

from talkbench.audio.huggingface import LARGE, Family, HFSpeechEncoder

WAV2VEC2 = Family(
    kind="wav2vec2",
    model_class="Wav2Vec2Model",
    ctc_class="Wav2Vec2ForCTC",
    checkpoints={
        "facebook/wav2vec2-base-960h": "base, CTC-fine-tuned on LibriSpeech 960 h; FaceFormer, CodeTalker",
        "facebook/wav2vec2-large-xlsr-53": "large, 53 languages, self-supervised; UniTalker-L",
        "jonatasgrosman/wav2vec2-large-xlsr-53-english": "large xlsr-53 fine-tuned for English CTC; SelfTalk",
    },
    architectures={
        "facebook/wav2vec2-large-xlsr-53": LARGE,
        "jonatasgrosman/wav2vec2-large-xlsr-53-english": {**LARGE, "vocab_size": 33},
    },
)


class Wav2Vec2Encoder(HFSpeechEncoder):
    family = WAV2VEC2
