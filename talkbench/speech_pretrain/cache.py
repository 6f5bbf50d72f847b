"""The pretrained encoder's cache and MLflow run.

``ensure_pretrained_encoder`` returns the cached checkpoint for a config, pretraining it on a cache
miss: the checkpoint is written to a temporary folder, logged as one MLflow run (experiment
``synthtalk-encoder``: settings as params, per-epoch loss and held-out error, the final held-out frame
phoneme error rate, the checkpoint as an artifact), then moved into place atomically. A cache hit
opens no tracking store.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from talkbench import contract
from talkbench.audio.synthtalk import CHECKPOINT, DEFAULT_NAMES, DEFAULT_RECORD, KIND, META, encoder_cache

from .config import PretrainConfig
from .data import PHONEMES
from .encoder import save_checkpoint
from .train import pretrain, torch_threads

EXPERIMENT = "synthtalk-encoder"
RUN_NAME = "synthtalk-encoder-pretrain"
KEY_TAG = contract.Tag.ENCODER_KEY  # the cache key, to find the run of a cached checkpoint


@dataclass
class Result:
    path: Path  # the checkpoint file
    meta: dict  # per, wall time, run id, parameter count, key
    cached: bool


def cached(cfg: PretrainConfig) -> Result | None:
    final = encoder_cache() / cfg.cache_key()
    if (final / CHECKPOINT).is_file() and (final / META).is_file():
        return Result(final / CHECKPOINT, json.loads((final / META).read_text()), True)
    return None


def ensure_pretrained_encoder(
    cfg: PretrainConfig | None = None,
    tracking_uri: str | None = None,
    tracker=None,
    force: bool = False,
    threads: int | None = 1,
) -> Result:
    """The cached encoder for ``cfg`` (default settings when None), pretrained and logged on a miss.

    ``tracker``: a talkbench.tracking.Tracker, else one for ``tracking_uri`` (default: the configured
    URI), made only on a miss. ``threads``: torch CPU threads while pretraining (None: leave as is);
    one by default, so the weights do not depend on the machine's core count (the key ignores it).
    """
    cfg = cfg or PretrainConfig()
    cfg.validate()
    hit = None if force else cached(cfg)
    if hit is not None:
        _record_default(cfg)
        return hit
    if tracker is None:
        from talkbench.tracking import Tracker

        tracker = Tracker(tracking_uri)
    from talkbench.tracking import git_info

    key = cfg.cache_key()
    final = encoder_cache() / key
    final.parent.mkdir(parents=True, exist_ok=True)
    git = git_info()
    run_id = tracker.create_run(
        tracker.ensure_experiment(EXPERIMENT), run_name=RUN_NAME,
        tags={contract.Tag.SEED: cfg.seed, contract.Tag.GIT_COMMIT: git["commit"],
              contract.Tag.GIT_DIRTY: git["dirty"], KEY_TAG: key},
    )
    status = "FAILED"
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=final.parent))
    try:
        tracker.log_params(run_id, {**cfg.to_dict(), "phonemes": " ".join(PHONEMES), "cache_key": key})
        with torch_threads(threads):
            model, figures = pretrain(cfg, log=lambda m, step: tracker.log_metrics(run_id, m, step=step))
        meta = {k: v for k, v in figures.items()}
        meta.update(key=key, run_id=run_id, tracking_uri=tracker.uri, config=cfg.to_dict(),
                    phonemes=list(PHONEMES))
        save_checkpoint(tmp, model, cfg.arch, meta)
        tracker.log_metrics(run_id, {k: v for k, v in figures.items()
                                     if isinstance(v, float) or k.startswith("n_")})
        tracker.log_artifact(run_id, tmp, "encoder")
        if final.exists():  # a stale partial folder, or lost a race to an identical run
            shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
        _record_default(cfg)
        status = "FINISHED"
    finally:
        tracker.finish_run(run_id, status)
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return Result(final / CHECKPOINT, meta, False)


def _record_default(cfg: PretrainConfig) -> None:
    """Name the default settings' checkpoint for talkbench.audio.synthtalk (``audio.name_or_path:
    synthtalk``), atomically, whenever the default is ensured: so the record follows the code."""
    key = cfg.cache_key()
    if key != PretrainConfig().cache_key():
        return
    record = encoder_cache() / DEFAULT_RECORD
    tmp = record.with_name(f".{DEFAULT_RECORD}-{os.getpid()}")
    tmp.write_text(key + "\n")
    os.replace(tmp, record)


def ensure_for_audio(audio_cfg, tracking_uri: str | None = None, tracker=None) -> Result | None:
    """For a pipeline, before it builds a method: make the default encoder if the method's audio config
    (``<method>.audio``) loads it (``kind: synthtalk``, pretrained, default name) and it is not cached
    yet. Returns the cached or new encoder (its ``meta['run_id']`` is the pretraining run), else None."""
    if getattr(audio_cfg, "kind", None) != KIND or not audio_cfg.pretrained:
        return None
    if audio_cfg.name_or_path not in DEFAULT_NAMES:
        return None  # an explicit checkpoint path: nothing to make
    return ensure_pretrained_encoder(None, tracking_uri=tracking_uri, tracker=tracker)
