"""Writers of the dataset converters: each file goes to a temporary name and is renamed when complete,
so an interrupted conversion leaves no half-written clip (a rerun simply writes it again)."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf


def save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


def write_wav(path: Path, audio: np.ndarray, rate: int) -> None:
    tmp = path.with_name(path.stem + ".tmp.wav")
    sf.write(tmp, audio, rate, subtype="PCM_16")
    os.replace(tmp, path)


def copy_file(source: Path, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, path)


def save_templates(path: Path, templates: dict[str, np.ndarray]) -> None:
    """templates.pkl as the reference loaders read it: a dict of plain float32 arrays (no objects)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        pickle.dump({k: np.asarray(v, np.float32) for k, v in templates.items()}, f, protocol=4)
    os.replace(tmp, path)
