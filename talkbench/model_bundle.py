"""A trained model as a self-contained folder: everything needed to predict, nothing of the dataset.

The folder is what the MLflow model (:mod:`talkbench.mlflow_model`) carries as its one artifact, and
it can be read without MLflow:

- ``config.yaml``: the run's resolved config (RunConfig.save);
- ``model.safetensors``: the method's state dict (no pickle: safetensors holds only tensors);
- ``spec.json`` + ``arrays.npz``: the DatasetSpec essentials (fps, vertex count, faces, regions, the
  training speakers' names and templates, splits, scales...), JSON for scalars, npz for arrays;
- ``meta.json``: talkbench version, method, dataset, the training audio's statistics for the
  out-of-domain warning (animate.audio_reference), and free provenance (run id, imported checkpoint);
- ``manifest.json``: the sha256 of every other file, checked by :func:`read_bundle` before any file is
  parsed (the logging run records the same digests: ``Tag.MODEL_FILES``), so one changed byte is
  refused with the file's name.

Folders written before the manifest (``weights.pt``, read with ``weights_only``) still load, unverified.

Rebuilding the method never downloads anything: a pretrained speech encoder is built randomly
initialised (``audio.pretrained = false``) and then overwritten by ``weights.pt``, which holds it.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from talkbench.errors import TalkbenchError

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"
SPEC_FILE = "spec.json"
ARRAYS_FILE = "arrays.npz"
META_FILE = "meta.json"
MANIFEST_FILE = "manifest.json"
BUNDLE_FILES = (CONFIG_FILE, WEIGHTS_FILE, SPEC_FILE, ARRAYS_FILE, META_FILE)
LEGACY_WEIGHTS_FILE = "weights.pt"  # talkbench <= 0.1 (torch.save, read with weights_only)
MANIFEST_FORMAT = "talkbench-model"
_TEMPLATE = "template/"  # npz key prefix of a training speaker's template


def talkbench_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("talkbench")
    except PackageNotFoundError:
        return "unknown"


# ------------------------------------------------------------------------------------------- spec
def _spec_to_parts(spec) -> tuple[dict, dict[str, np.ndarray]]:
    """(JSON-ready fields, arrays) of a DatasetSpec; arrays are keyed ``field`` or ``field/sub``."""
    plain: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name)
        if f.name == "splits":
            plain[f.name] = {
                k: {
                    "subjects": list(s.subjects),
                    "sentences": s.sentences,
                    "by_group": [list(g) for g in s.by_group],
                }
                for k, s in value.items()
            }
        elif f.name in ("regions", "channel_groups"):
            plain[f.name] = sorted(value)
            arrays.update({f"{f.name}/{k}": np.asarray(v) for k, v in value.items()})
        elif f.name == "rig":  # the training speakers' blendshapes: what animating a new clip needs
            plain[f.name] = value is not None
            if value is not None:
                arrays.update(value.to_arrays("rig/", subjects=tuple(spec.train_subjects)))
        elif f.name == "mouth_pair":
            plain[f.name] = value is not None
            if value is not None:
                arrays["mouth_pair/0"], arrays["mouth_pair/1"] = (np.asarray(v) for v in value)
        elif isinstance(value, np.ndarray) or f.name in ("faces", "lip_loss_indices"):
            plain[f.name] = value is not None
            if value is not None:
                arrays[f.name] = np.asarray(value)
        elif isinstance(value, tuple):
            plain[f.name] = list(value)
        else:
            plain[f.name] = value
    return plain, arrays


def _spec_from_parts(plain: dict, arrays) -> Any:
    from talkbench.datasets.spec import DatasetSpec, Split

    kw: dict[str, Any] = {}
    for f in dataclasses.fields(DatasetSpec):
        if f.name not in plain:
            continue  # written by an older talkbench: the field's default
        value = plain[f.name]
        if f.name == "splits":
            kw[f.name] = {
                k: Split(
                    tuple(s["subjects"]),
                    tuple(s["sentences"]) if s["sentences"] else None,
                    tuple(tuple(g) for g in s.get("by_group", ())),
                )
                for k, s in value.items()
            }
        elif f.name in ("regions", "channel_groups"):
            kw[f.name] = {k: arrays[f"{f.name}/{k}"] for k in value}
        elif f.name == "rig":
            from talkbench.datasets.rig import Rig

            kw[f.name] = Rig.from_arrays(arrays, "rig/", where="model rig") if value else None
        elif f.name == "mouth_pair":
            kw[f.name] = (arrays["mouth_pair/0"], arrays["mouth_pair/1"]) if value else None
        elif f.name in ("faces", "lip_loss_indices"):
            kw[f.name] = arrays[f.name] if value else None
        elif f.name in ("train_subjects", "channels"):
            kw[f.name] = tuple(value)
        else:
            kw[f.name] = value
    return DatasetSpec(**kw)


# ------------------------------------------------------------------------------------------ write
def write_bundle(
    out_dir: str | Path,
    cfg,
    method,
    spec,
    templates: dict[str, np.ndarray],
    reference: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """Write the folder for a trained ``method``. ``templates``: the training speakers' (an imported
    checkpoint without its dataset has none: animating it then needs a template)."""
    from safetensors.torch import save_file

    from talkbench.checkpoint import safetensors_state

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / CONFIG_FILE)
    save_file(safetensors_state(method.state_dict()), out / WEIGHTS_FILE)
    plain, arrays = _spec_to_parts(spec)
    for s in spec.train_subjects:
        if s in templates:
            arrays[_TEMPLATE + s] = np.asarray(templates[s], np.float32)
    (out / SPEC_FILE).write_text(json.dumps(plain, indent=1, default=str))
    np.savez(out / ARRAYS_FILE, **arrays)
    meta = {
        "talkbench_version": talkbench_version(),
        "method": cfg.method,
        "dataset": spec.name,
        "preset": cfg.preset,
        "audio_reference": reference,
        **(extra or {}),
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=1, default=str))
    write_manifest(out, BUNDLE_FILES)
    return out


def write_manifest(root: Path, files: tuple[str, ...] | list[str]) -> None:
    """``manifest.json``: the sha256 of each of ``files`` (the bundle's, and any a folder adds, such as
    an exported model's card); every file it lists is checked on load."""
    manifest = {"format": MANIFEST_FORMAT, "files": {f: sha256_file(root / f) for f in files}}
    (root / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))


def sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def file_digests(root: str | Path) -> dict[str, str]:
    """The manifest's ``{file: sha256}`` of a model folder (what the logging run records)."""
    return dict(_manifest(Path(root))["files"])


def format_digests(digests: dict[str, str]) -> str:
    """``name:sha256=HEX`` pairs, space-separated: the run tag's value (like ``Tag.CHECKPOINT``)."""
    return " ".join(f"{name}:sha256={digest}" for name, digest in sorted(digests.items()))


def parse_digests(text: str) -> dict[str, str]:
    pairs = (item.split(":sha256=", 1) for item in text.split())
    return {name: digest for name, digest in pairs}


def _manifest(root: Path) -> dict:
    try:
        manifest = json.loads((root / MANIFEST_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise TalkbenchError(f"{root / MANIFEST_FILE}: unreadable model manifest ({exc})") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if manifest.get("format") != MANIFEST_FORMAT or not isinstance(files, dict):
        raise TalkbenchError(f"{root / MANIFEST_FILE}: not a talkbench model manifest")
    return manifest


def verify_bundle(root: str | Path, expected: dict[str, str] | None = None) -> None:
    """Check every file of the folder against its manifest and the manifest against ``expected``
    (the digests its run recorded); the first file that differs is one TalkbenchError naming it."""
    root = Path(root)
    recorded = file_digests(root)
    if expected is not None and expected != recorded:
        changed = sorted(f for f in set(expected) | set(recorded) if expected.get(f) != recorded.get(f))
        raise TalkbenchError(
            f"{root / MANIFEST_FILE}: its sha256 of {', '.join(changed)} differs from the one its run "
            "recorded: the model folder was changed after it was logged; refusing to load it"
        )
    unrecorded = [name for name in BUNDLE_FILES if name not in recorded]
    if unrecorded:
        raise TalkbenchError(f"{root / MANIFEST_FILE}: records no sha256 of {', '.join(unrecorded)}")
    for name in recorded:  # the bundle's files and any the folder adds (an export's card, config.json)
        path = root / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise TalkbenchError(f"{root / MANIFEST_FILE}: '{name}' is not a file of the folder")
        if not path.is_file():
            raise TalkbenchError(f"{path}: listed in {MANIFEST_FILE} but missing")
        if sha256_file(path) != recorded[name]:
            raise TalkbenchError(
                f"{path}: its sha256 differs from the one in {MANIFEST_FILE} (changed or damaged after "
                "it was written); refusing to load it"
            )


# ------------------------------------------------------------------------------------------- read
@dataclass
class Bundle:
    """A model folder read back: config, spec, templates and metadata; :meth:`method` builds it."""

    root: Path
    config: Any  # RunConfig
    spec: Any  # DatasetSpec
    templates: dict[str, np.ndarray]  # the training speakers', in spec.train_subjects order
    meta: dict

    @property
    def reference(self) -> dict | None:
        return self.meta.get("audio_reference")

    @property
    def default_template(self) -> np.ndarray:
        """The first training speaker's template (the default of ``bench animate``)."""
        first = self.spec.train_subjects[0]
        if first not in self.templates:
            raise TalkbenchError(
                f"model {self.root}: it stores no training template (imported without its dataset); "
                "give a template mesh (--template)"
            )
        return self.templates[first]

    def method(self, device: str = "cpu"):
        """The method with its trained weights, in eval mode."""
        import torch

        from talkbench.registry import METHODS

        method_config = copy.deepcopy(self.config.method_config)
        # the weights below hold the encoder: build it, never download or read a cached checkpoint
        audio = getattr(method_config, "audio", None)
        if isinstance(audio, dict):  # CodeTalker keeps its encoder settings as a plain dict
            audio["pretrained"] = False
        elif audio is not None and getattr(audio, "pretrained", False):
            audio.pretrained = False
        model = METHODS.get(self.config.method)(method_config, self.spec)
        path = self.root / WEIGHTS_FILE
        if path.is_file():
            from safetensors.torch import load_file

            state = load_file(path)
        else:  # written before the manifest
            path = self.root / LEGACY_WEIGHTS_FILE
            state = torch.load(path, map_location="cpu", weights_only=True)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise TalkbenchError(f"{path}: does not fit {self.config.method}: {first}") from None
        return model.to(device).eval()


def read_bundle(root: str | Path, expected: dict[str, str] | None = None) -> Bundle:
    """Verify (:func:`verify_bundle`, ``expected``: the run's digests) and read a model folder."""
    from talkbench.config import RunConfig

    root = Path(root)
    legacy = not (root / MANIFEST_FILE).is_file() and (root / LEGACY_WEIGHTS_FILE).is_file()
    needed = [f for f in BUNDLE_FILES if f != WEIGHTS_FILE] if legacy else [*BUNDLE_FILES, MANIFEST_FILE]
    missing = [f for f in needed if not (root / f).is_file()]
    if missing:
        raise TalkbenchError(f"{root}: not a talkbench model folder (missing {', '.join(missing)})")
    if not legacy:
        verify_bundle(root, expected)
    plain = json.loads((root / SPEC_FILE).read_text())
    with np.load(root / ARRAYS_FILE) as npz:
        arrays = {k: npz[k] for k in npz.files}
    spec = _spec_from_parts(plain, arrays)
    templates = {s: arrays[_TEMPLATE + s] for s in spec.train_subjects if _TEMPLATE + s in arrays}
    return Bundle(
        root=root,
        config=RunConfig.load(root / CONFIG_FILE),
        spec=spec,
        templates=templates,
        meta=json.loads((root / META_FILE).read_text()),
    )
