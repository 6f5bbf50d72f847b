"""Pretrain the SynthTalk speech encoder once (frame-wise phoneme classification), cache and log it.

``ensure_pretrained_encoder`` returns the cached checkpoint for a config, pretraining it on a cache
miss: the checkpoint is written to a temporary folder, logged as one MLflow run (experiment
``synthtalk-encoder``: settings as params, per-epoch loss and held-out error, the final held-out frame
phoneme error rate, the checkpoint as an artifact), then moved into place atomically.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from talkbench import contract
from talkbench.errors import DataError

from .config import PretrainConfig
from .data import HELDOUT_OFFSET, PHONEMES, Utterance, corpus
from .encoder import CHECKPOINT, META, PhonemeEncoder, encoder_cache, save_checkpoint

EXPERIMENT = "synthtalk-encoder"
RUN_NAME = "synthtalk-encoder-pretrain"
LOSS_METRIC = "pretrain/loss"
VAL_PER_METRIC = "pretrain/heldout_per"
PER_METRIC = "heldout/frame_per"  # frame phoneme error rate on held-out speakers
TRAIN_PER_METRIC = "train/frame_per"
WALL_METRIC = "time/pretrain_s"
CPU_METRIC = "time/pretrain_cpu_s"
KEY_TAG = "talkbench.encoder_key"  # the cache key, to find the run of a cached checkpoint


@dataclass
class Result:
    path: Path  # the checkpoint file
    meta: dict  # per, wall time, run id, parameter count, key
    cached: bool


def _batch(items: list[Utterance]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(u.audio) for u in items])
    audio = torch.zeros(len(items), int(lengths.max()))
    labels = torch.full((len(items), max(len(u.labels) for u in items)), -100, dtype=torch.long)
    for b, u in enumerate(items):
        audio[b, : len(u.audio)] = torch.from_numpy(u.audio)
        labels[b, : len(u.labels)] = torch.from_numpy(u.labels)
    return audio, lengths, labels


def _logits(model: PhonemeEncoder, items: list[Utterance]) -> tuple[torch.Tensor, torch.Tensor]:
    audio, lengths, labels = _batch(items)
    logits, out_len = model(audio, lengths)
    expected = [len(u.labels) for u in items]
    if out_len.tolist() != expected:  # labels and encoder frames must be the same grid
        raise DataError(f"encoder gives {out_len.tolist()} frames, labels have {expected}")
    return logits, labels[:, : logits.shape[1]]


@torch.no_grad()
def frame_error(model: PhonemeEncoder, items: list[Utterance], batch_size: int = 16) -> float:
    """Share of valid 50 Hz frames whose arg-max phoneme is wrong."""
    model.eval()
    wrong = total = 0
    for i in range(0, len(items), batch_size):
        logits, labels = _logits(model, items[i : i + batch_size])
        valid = labels >= 0
        wrong += int((logits.argmax(-1) != labels)[valid].sum())
        total += int(valid.sum())
    return wrong / max(total, 1)


def _batches(n: int, batch_size: int, gen: torch.Generator, lengths: list[int]) -> list[list[int]]:
    """Shuffled batches of similar length (less padding): sort shuffled pools of 4 batches by length."""
    order = torch.randperm(n, generator=gen).tolist()
    pool = 4 * batch_size
    out = []
    for i in range(0, n, pool):
        chunk = sorted(order[i : i + pool], key=lambda k: lengths[k])
        out += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    perm = torch.randperm(len(out), generator=gen).tolist()
    return [out[k] for k in perm]


def pretrain(cfg: PretrainConfig, log=None) -> tuple[PhonemeEncoder, dict]:
    """Train from scratch with a fixed seed; returns the model and its figures (held-out PER, ...)."""
    cfg.validate()
    start, cpu_start = time.perf_counter(), time.process_time()
    train = corpus(cfg.seed, range(cfg.train_speakers), cfg.sentences, tuple(cfg.words))
    heldout = corpus(cfg.seed, range(HELDOUT_OFFSET, HELDOUT_OFFSET + cfg.heldout_speakers),
                     cfg.heldout_sentences, tuple(cfg.words))
    data_s = time.perf_counter() - start
    torch.manual_seed(cfg.seed)
    model = PhonemeEncoder(cfg.arch)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch

    def schedule(step: int) -> float:  # linear warm-up, cosine decay to zero
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        return 0.5 * (1 + math.cos(math.pi * (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    gen = torch.Generator().manual_seed(cfg.seed)
    lengths = [len(u.audio) for u in train]
    losses = []
    for epoch in range(cfg.epochs):
        model.train()
        total_loss = frames = 0.0
        for idx in _batches(len(train), cfg.batch_size, gen, lengths):
            logits, labels = _logits(model, [train[k] for k in idx])
            loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            n = int((labels >= 0).sum().detach())
            total_loss += float(loss.detach()) * n
            frames += n
        losses.append(total_loss / frames)
        if log is not None:
            log({LOSS_METRIC: losses[-1], VAL_PER_METRIC: frame_error(model, heldout)}, epoch)
    figures = {
        PER_METRIC: frame_error(model, heldout),
        TRAIN_PER_METRIC: frame_error(model, train),
        WALL_METRIC: time.perf_counter() - start,
        CPU_METRIC: time.process_time() - cpu_start,  # less sensitive to a busy machine than wall time
        "time/data_s": data_s,
        "losses": losses,
        "n_parameters": sum(p.numel() for p in model.encoder.parameters()),
        "n_parameters_head": sum(p.numel() for p in model.head.parameters()),
        "n_train_clips": len(train),
        "n_heldout_clips": len(heldout),
        "train_frames": int(sum(len(u.labels) for u in train)),
        "heldout_frames": int(sum(len(u.labels) for u in heldout)),
    }
    model.eval()
    return model, figures


@contextlib.contextmanager
def torch_threads(n: int | None):
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


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
        status = "FINISHED"
    finally:
        tracker.finish_run(run_id, status)
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return Result(final / CHECKPOINT, meta, False)


def ensure_for_audio(audio_cfg, tracking_uri: str | None = None, tracker=None) -> Result | None:
    """For a pipeline, before it builds a method: make the default encoder if the method's audio config
    (``<method>.audio``) loads it (``kind: synthtalk``, pretrained, default name) and it is not cached
    yet. Returns the cached or new encoder (its ``meta['run_id']`` is the pretraining run), else None."""
    from .encoder import DEFAULT_NAMES, KIND

    if getattr(audio_cfg, "kind", None) != KIND or not audio_cfg.pretrained:
        return None
    if audio_cfg.name_or_path not in DEFAULT_NAMES:
        return None  # an explicit checkpoint path: nothing to make
    return ensure_pretrained_encoder(None, tracking_uri=tracking_uri, tracker=tracker)
