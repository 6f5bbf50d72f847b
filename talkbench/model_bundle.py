"""A trained model as a self-contained folder: everything needed to predict, nothing of the dataset.

The folder is what the MLflow model (:mod:`talkbench.mlflow_model`) carries as its one artifact, and
it can be read without MLflow:

- ``config.yaml``: the run's resolved config (RunConfig.save);
- ``weights.pt``: the method's state dict (``torch.save``, read back with ``weights_only``);
- ``spec.json`` + ``arrays.npz``: the DatasetSpec essentials (fps, vertex count, faces, regions, the
  training speakers' names and templates, splits, scales...), JSON for scalars, npz for arrays;
- ``meta.json``: talkbench version, method, dataset, the training audio's statistics for the
  out-of-domain warning (animate.audio_reference), and free provenance (run id, imported checkpoint).

Rebuilding the method never downloads anything: a pretrained speech encoder is built randomly
initialised (``audio.pretrained = false``) and then overwritten by ``weights.pt``, which holds it.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from talkbench.errors import TalkbenchError

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "weights.pt"
SPEC_FILE = "spec.json"
ARRAYS_FILE = "arrays.npz"
META_FILE = "meta.json"
BUNDLE_FILES = (CONFIG_FILE, WEIGHTS_FILE, SPEC_FILE, ARRAYS_FILE, META_FILE)
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
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / CONFIG_FILE)
    state = {k: v.detach().cpu().contiguous() for k, v in method.state_dict().items()}
    torch.save(state, out / WEIGHTS_FILE)
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
    return out


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
        state = torch.load(path, map_location="cpu", weights_only=True)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise TalkbenchError(f"{path}: does not fit {self.config.method}: {first}") from None
        return model.to(device).eval()


def read_bundle(root: str | Path) -> Bundle:
    from talkbench.config import RunConfig

    root = Path(root)
    missing = [f for f in BUNDLE_FILES if not (root / f).is_file()]
    if missing:
        raise TalkbenchError(f"{root}: not a talkbench model folder (missing {', '.join(missing)})")
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
