"""Pretraining of the SynthTalk speech encoder: frame-wise phoneme classification at 50 Hz, fixed seed.

Everything here shapes the weights (its source is part of the cache key); caching and tracking live
in :mod:`talkbench.speech_pretrain.cache`.
"""

from __future__ import annotations

import contextlib
import math
import time

import torch
import torch.nn.functional as F

from talkbench.errors import DataError

from .config import PretrainConfig
from .data import HELDOUT_OFFSET, Utterance, corpus
from .encoder import PhonemeEncoder

LOSS_METRIC = "pretrain/loss"
VAL_PER_METRIC = "pretrain/heldout_per"
PER_METRIC = "heldout/frame_per"  # frame phoneme error rate on held-out speakers
TRAIN_PER_METRIC = "train/frame_per"
WALL_METRIC = "time/pretrain_s"
CPU_METRIC = "time/pretrain_cpu_s"


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
