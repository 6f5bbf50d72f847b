"""SynthTalk: the embedded procedural talking-face dataset (shared/specs/synthtalk.md).

A parametric face driven by articulatory blendshapes, a source-filter speech synthesiser, coarticulated
visemes and speakers whose speaking style is linked to their voice, written in the prepared-VOCASET layout.
"""

from .generate import (
    CAPTURE_FPS,
    FPS,
    GENERATOR_VERSION,
    PRESETS,
    VARIANTS,
    Preset,
    cache_key,
    cache_root,
    clip_audio,
    dataset_name,
    ensure_synthtalk,
    generate,
    get_preset,
    speaker,
)

__all__ = [
    "CAPTURE_FPS", "FPS", "GENERATOR_VERSION", "PRESETS", "Preset", "cache_key", "cache_root", "clip_audio",
    "ensure_synthtalk", "generate", "get_preset", "speaker", "VARIANTS", "dataset_name",
]
