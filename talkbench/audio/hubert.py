"""HuBERT: base (MemoryTalker, FaceDiffuser), large, and the CTC-fine-tuned variant.

MemoryTalker's release loads ``HubertForCTC`` on the self-supervised base checkpoint, so its CTC head
starts random (spec §2.1): the method keeps that head itself. A CTC-fine-tuned checkpoint
(hubert-large-ls960-ft) gives real ASR posteriors through :func:`ctc_head_weights`.
"""

from __future__ import annotations

from talkbench.audio.huggingface import LARGE, Family, HFSpeechEncoder

HUBERT = Family(
    kind="hubert",
    model_class="HubertModel",
    ctc_class="HubertForCTC",
    checkpoints={
        "facebook/hubert-base-ls960": "base, self-supervised, LibriSpeech 960 h; MemoryTalker, FaceDiffuser",
        "facebook/hubert-large-ll60k": "large, self-supervised on Libri-Light 60k h",
        "facebook/hubert-large-ls960-ft": "large, CTC-fine-tuned on LibriSpeech 960 h (32 tokens)",
    },
    architectures={"facebook/hubert-large-ll60k": LARGE, "facebook/hubert-large-ls960-ft": LARGE},
)


class HubertEncoder(HFSpeechEncoder):
    family = HUBERT
