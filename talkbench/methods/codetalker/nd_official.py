"""CodeTalker-ND reads CodeTalker's official files (:mod:`talkbench.methods.codetalker.official`): the
same architecture and weights, only the quantiser draws. Doubiiu's released files were trained with
the nearest code, so an import is the variant that draws at test time only
(``nd_in_training=false``, its own config hash); ``--set codetalker-nd.nd_in_training=true`` records
a file trained with the drawing quantiser (the benchmark study's). The licence is CodeTalker's.
"""

from __future__ import annotations

from pathlib import Path

from talkbench.methods.codetalker import official as _codetalker
from talkbench.methods.codetalker.official import import_checkpoint, save_official

LICENCE = getattr(_codetalker, "LICENCE", None)  # the weights are CodeTalker's

__all__ = ["LICENCE", "config_overrides", "import_checkpoint", "save_official"]


def config_overrides(checkpoint: str | Path) -> list[str]:
    return ["codetalker-nd.nd_in_training=false"]
