"""The release's names for the shared body (encoder and decoder) and loading it into a model, kept
apart from official.py so that the model (``finetune_head``) can use it without importing the importer."""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from talkbench.checkpoint import load_weights
from talkbench.errors import TalkbenchError
from talkbench.methods import official as common

log = logging.getLogger(__name__)

# our prefix -> the release's (heads and bases are renamed by official.py: dataset name -> annotation)
PREFIXES = (
    ("audio_encoder.model.", "audio_encoder."),
    ("decoder.identity.", "decoder.learnable_style_emb."),
    ("decoder.blocks.", "decoder.tcn.first_net.conv_layers."),
)
BACK = tuple((new, old) for old, new in PREFIXES)
_BODY = ("audio_encoder.", "decoder.")


def load_body(model: nn.Module, checkpoint: str | Path) -> None:
    """Load the shared encoder and decoder of a UniTalker file (the release's .pt, or a talkbench run's
    verified model.safetensors) into ``model`` (its heads and bases are left as they are). A table of
    another identity count becomes the file's pivot row repeated, as the release's load_ckpt does when
    it fine-tunes on datasets of other subjects."""
    path = Path(checkpoint)
    if path.suffix == ".safetensors":  # a talkbench run's final weights: our names
        state = {k: v for k, v in load_weights(path).items() if k.startswith(_BODY)}
        if "decoder.identity.weight" not in state:
            raise TalkbenchError(f"unitalker.finetune_head {path}: not the weights of a UniTalker run "
                                 "(no decoder.identity.weight)")
    else:
        official, _ = common.read_checkpoint(path, "unitalker.finetune_head")
        common.require_method(official, "unitalker", path, "UniTalker")
        state = {common.rename_key(k, BACK): v for k, v in official.items()
                 if k.startswith(_BODY) and not k.endswith(".PPE.pe")}
    expected = {k: v for k, v in model.state_dict().items() if k.startswith(_BODY)}
    table = state.get("decoder.identity.weight")
    if table is not None and table.shape[0] != model.n_identities:
        state["decoder.identity.weight"] = table[-1:].repeat(model.n_identities, 1)
    state = common.upgrade_hf_names(state, expected)
    common.check_state(state, expected, path, "unitalker.finetune_head (encoder and decoder)",
                       rename=lambda k: common.rename_key(k, PREFIXES))
    model.load_state_dict(state, strict=False)
    log.info("%s: encoder and decoder loaded; head '%s' trains from zero", path.name, model.spec.name)
