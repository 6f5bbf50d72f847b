"""Checkpoints of the official repositories: file reading, key checks and the shared name rules.

Each method's ``official.py`` (``talkbench.methods.<name>.official``; for a plugin, the module
``official`` of the package that defines its Method class) holds its own name mapping
(specs/official-checkpoints.md) with two functions:

    import_checkpoint(model, checkpoint, vqvae=None) -> our state dict, ready for model.load_state_dict
    save_official(model, path, vqvae=None) -> writes the weights as the official code saves them

and, where the model's dimensions come from the file (UniTalker), ``config_overrides(checkpoint) ->
["<method>.<key>=<value>", ...]``, applied before the user's ``--set``.

This module has what they share: reading a file with ``torch.load(weights_only=True)`` in either
official layout (a bare state dict, or a dict whose ``state_dict`` entry holds it), the one-line
error for missing / unexpected / mis-shaped keys and the HF speech-encoder naming of older
transformers releases. Pure weight conversions: which preset's model to build, on which dataset's
spec, is :mod:`talkbench.official_import`'s (``bench import``).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import torch

from talkbench.errors import TalkbenchError

OFFICIAL_METHODS = (
    "faceformer", "codetalker", "codetalker-nd", "memorytalker", "selftalk", "facediffuser", "unitalker"
)
# a built-in whose converter is not talkbench.methods.<name>.official (it reads another method's files)
_CONVERTER_MODULES = {"codetalker-nd": "talkbench.methods.codetalker.nd_official"}
# keys that identify the method whose official code wrote a file (checked in this order)
_SIGNATURES = (
    ("selftalk", ("text_encoder.lm_head.weight", "lip_map.weight")),
    ("unitalker", ("decoder.learnable_style_emb.weight",)),
    ("memorytalker", ("memory_net.M_m", "E_aud.lm_head.weight")),
    ("codetalker", ("learnable_style_emb.weight", "feat_map.weight")),
    ("codetalker (stage-1 VQ-VAE file)", ("quantize.embedding.weight",)),
    ("facediffuser", ("time_mlp.0.weight", "norm_cond.weight")),  # before faceformer: both have obj_vector
    ("faceformer", ("obj_vector.weight",)),
)
# transformers < 4.3x stored the positional conv's weight norm as weight_g / weight_v
_LEGACY_WEIGHT_NORM = {
    "weight_g": "parametrizations.weight.original0",
    "weight_v": "parametrizations.weight.original1",
}
_SHOW = 5  # names listed in an error before "..."

State = dict[str, torch.Tensor]


def converter(method: str):
    """The ``official`` module of a method that has one (imported lazily: methods stay independent):
    a built-in's ``talkbench.methods.<name>.official`` (codetalker-nd's reads CodeTalker's files:
    ``codetalker/nd_official.py``), a plugin's ``official`` module beside the
    module of its Method class (``talkbench_gru/official.py`` for ``talkbench_gru.method:Gru``)."""
    if method in OFFICIAL_METHODS:
        return importlib.import_module(_CONVERTER_MODULES.get(method, f"talkbench.methods.{method}.official"))
    from talkbench.registry import METHODS

    package = METHODS.get(method).__module__.rpartition(".")[0] if method in METHODS else ""
    if package and importlib.util.find_spec(f"{package}.official") is not None:
        module = importlib.import_module(f"{package}.official")
        if hasattr(module, "import_checkpoint"):  # not this shared module (mean-motion's package)
            return module
    raise TalkbenchError(
        f"no official checkpoint format for method '{method}'; expected one of "
        f"{', '.join(OFFICIAL_METHODS)}, or a plugin whose package has an 'official' module with "
        "import_checkpoint(model, checkpoint, vqvae=None)"
    )


# ------------------------------------------------------------------------------------------ reading
def read_checkpoint(path: str | Path, what: str = "checkpoint") -> tuple[State, dict]:
    """(weights, other entries) of an official file. Bare state dicts and ``{'state_dict': ...}``
    files are both accepted; a ``module.`` prefix on every key (DataParallel / DDP) is dropped."""
    path = Path(path)
    if not path.is_file():
        raise TalkbenchError(f"{what} {path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # unpickling errors come in many types; one line names the file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TalkbenchError(
            f"{what} {path}: not a loadable PyTorch checkpoint with weights_only=True ({first})"
        ) from None
    other: dict = {}
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        other = {k: v for k, v in obj.items() if k != "state_dict"}
        obj = obj["state_dict"]
    if (
        not isinstance(obj, Mapping)
        or not obj
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    ):
        raise TalkbenchError(
            f"{what} {path}: expected a state dict (parameter name -> tensor), bare or under 'state_dict'"
        )
    state = dict(obj)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state, other


def identify(keys: Iterable[str]) -> str | None:
    """Which official code wrote a state dict with these keys (None when no signature matches)."""
    keys = set(keys)
    for name, signature in _SIGNATURES:
        if any(k in keys for k in signature):
            return name
    return None


def require_method(state: Mapping[str, torch.Tensor], method: str, path: Path, preset: str) -> None:
    """A file of another method fails here with one line naming what it is."""
    found = identify(state)
    if found is not None and found != method:
        raise TalkbenchError(
            f"{path}: this is a {found} checkpoint, not {method} ({preset}); "
            f"pass it with --method {found.split()[0]}" + (" --vqvae" if "stage-1" in found else "")
        )


def upgrade_hf_names(state: State, expected: Iterable[str]) -> State:
    """Rename legacy ``weight_g`` / ``weight_v`` keys to the names our transformers uses."""
    expected = set(expected)
    out: State = {}
    for key, value in state.items():
        head, _, leaf = key.rpartition(".")
        new = f"{head}.{_LEGACY_WEIGHT_NORM[leaf]}" if leaf in _LEGACY_WEIGHT_NORM else key
        out[new if new in expected and key not in expected else key] = value
    return out


def legacy_hf_names(state: State) -> State:
    """The inverse of :func:`upgrade_hf_names`: the names the published checkpoints carry."""
    back = {v: k for k, v in _LEGACY_WEIGHT_NORM.items()}
    out: State = {}
    for key, value in state.items():
        for new, old in back.items():
            if key.endswith("." + new):
                key = key[: -len(new)] + old
                break
        out[key] = value
    return out


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOW])
    return f"{len(names)} ({shown}{', ...' if len(names) > _SHOW else ''})"


def check_state(
    state: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    path: Path,
    what: str,
    rename: Callable[[str], str] = lambda k: k,
) -> None:
    """One TalkbenchError naming the missing, unexpected and mis-shaped keys (first few + counts).

    ``state`` is already in our naming; ``rename`` maps our names back to the file's in messages.
    """
    missing = sorted(rename(k) for k in expected if k not in state)
    unexpected = sorted(rename(k) for k in state if k not in expected)
    shapes = [
        f"{rename(k)} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f"missing keys {_listed(missing)}")
    if unexpected:
        parts.append(f"unexpected keys {_listed(unexpected)}")
    if shapes:
        parts.append(f"shapes differ (file vs model) {_listed(shapes)}")
    hint = " (another preset or dataset?)" if shapes else ""
    raise TalkbenchError(f"{path}: does not fit {what}{hint}: " + "; ".join(parts))


def rename_key(key: str, pairs: Iterable[tuple[str, str]]) -> str:
    """Replace the first matching prefix of ``key`` (pairs are tried in order; no match: kept)."""
    for old, new in pairs:
        if key.startswith(old):
            return new + key[len(old) :]
    return key


def rename_prefixes(state: Mapping[str, torch.Tensor], pairs: Iterable[tuple[str, str]]) -> State:
    pairs = list(pairs)
    return {rename_key(k, pairs): v for k, v in state.items()}


def is_buffer_copy(key: str) -> bool:
    """Fixed positional tables the official code saves; we recompute them."""
    return key == "PPE.pe" or key.endswith("pos_embedding.pe")


def periodic_table(d_model: int, period: int, max_len: int = 600) -> torch.Tensor:
    """A saved positional buffer as the official code keeps it, (1, max_len, d): the period's
    sinusoid repeated (``period == max_len``: a plain sinusoid table)."""
    from talkbench.methods.layers import sinusoid_table

    table = sinusoid_table(period, d_model)
    return table.repeat(max_len // period + 1, 1)[None, :max_len]
