"""Does the speaking style of a clip retrieve its own speaker? (issue 29 point 6)

Stage 2 rests on the claim that E_s, run on a clip's audio, gives that speaker's style (the paper's
t-SNE: stage-2 features cluster by speaker). This measures it as nearest-centroid speaker retrieval:

- every speaker is enrolled by the mean embedding of its clips: a training speaker by its training
  clips (its own training style), a speaker the model never trained on (SynthTalk's and VOCASET's
  test speakers are unseen) by its other evaluation clips (leave-one-out);
- a probe clip is left out of its own speaker's centroid, and counts as retrieved when the nearest
  centroid (Euclidean, the triplet loss's distance) is its own speaker's among all enrolled speakers;
- chance is the mean over probes of 1 / (number of candidate speakers).

Three embeddings: ``triplet`` = style_mlp(f_s), the space L_style shapes (the headline); ``weights``
= w_s, what actually scales the memory slots; ``log_mel`` = the time-mean of E_s's input, an
encoder-free baseline (how separable the voices are before any learning).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def speaker_retrieval(
    probes: np.ndarray,
    probe_speakers: Sequence[str],
    enrolled: np.ndarray,
    enrolled_speakers: Sequence[str],
    probe_in_enrolled: Sequence[int | None] | None = None,
) -> dict:
    """Nearest-centroid top-1 of ``probes`` (N, D) among the speakers of ``enrolled`` (M, D).

    ``probe_in_enrolled[i]``: the row of ``enrolled`` that is probe i itself (left out of its
    speaker's centroid), or None. A probe whose speaker has no other enrolled clip is skipped.
    Returns top1, chance, n_probes, n_skipped, n_speakers and the per-speaker top-1.
    """
    probes, enrolled = np.asarray(probes, np.float64), np.asarray(enrolled, np.float64)
    names = sorted(set(enrolled_speakers))
    col = {s: k for k, s in enumerate(names)}
    members = np.zeros((len(enrolled), len(names)))
    members[np.arange(len(enrolled)), [col[s] for s in enrolled_speakers]] = 1.0
    sums, counts = members.T @ enrolled, members.sum(0)
    own = probe_in_enrolled if probe_in_enrolled is not None else [None] * len(probes)
    hits: dict[str, list[bool]] = {}
    chance: list[float] = []
    skipped = 0
    for x, speaker, row in zip(probes, probe_speakers, own):
        s, n = sums.copy(), counts.copy()
        if row is not None:  # leave the probe out of its own centroid
            k = col[enrolled_speakers[row]]
            s[k] -= enrolled[row]
            n[k] -= 1
        present = n > 0
        if speaker not in col or not present[col[speaker]]:
            skipped += 1
            continue
        centroids = s[present] / n[present, None]
        nearest = np.flatnonzero(present)[int(np.argmin(((centroids - x) ** 2).sum(-1)))]
        hits.setdefault(speaker, []).append(names[nearest] == speaker)
        chance.append(1.0 / int(present.sum()))
    flat = [h for v in hits.values() for h in v]
    return {
        "top1": float(np.mean(flat)) if flat else None,  # None: no probe could be scored
        "chance": float(np.mean(chance)) if chance else None,
        "n_probes": len(flat),
        "n_skipped": skipped,
        "n_speakers": len(names),
        "per_speaker": {s: float(np.mean(v)) for s, v in sorted(hits.items())},
    }


def retrieval_report(
    train: dict[str, np.ndarray],
    train_speakers: Sequence[str],
    test: dict[str, np.ndarray],
    test_speakers: Sequence[str],
) -> dict:
    """For each embedding space (same keys in ``train`` and ``test``): retrieval of the test clips
    (training speakers enrolled by their training clips, unseen ones by their other test clips) and,
    for reference, of the training clips among the training speakers (leave-one-out)."""
    seen = set(train_speakers)
    unseen_rows = [i for i, s in enumerate(test_speakers) if s not in seen]
    speakers = [*train_speakers, *(test_speakers[i] for i in unseen_rows)]
    self_row = {i: len(train_speakers) + j for j, i in enumerate(unseen_rows)}
    out = {}
    for space in train:
        enrolled = np.concatenate([train[space], test[space][unseen_rows]])
        out[space] = {
            "test": speaker_retrieval(
                test[space],
                test_speakers,
                enrolled,
                speakers,
                [self_row.get(i) for i in range(len(test_speakers))],
            ),  # fmt: skip
            "train": speaker_retrieval(
                train[space], train_speakers, train[space], train_speakers, list(range(len(train_speakers)))
            ),
        }
    return out


def _weights_summary(w: np.ndarray) -> dict:
    """w_s over clips (N, n): its mean, the mean over slots of the spread across clips, min and max;
    w = 1 everywhere is the plain memory the frozen decoder learnt with."""
    return {"mean": float(w.mean()), "std_across_clips": float(w.std(0).mean()),
            "min": float(w.min()), "max": float(w.max())}  # fmt: skip


def style_retrieval(
    train: dict[str, np.ndarray],
    train_speakers: Sequence[str],
    test: dict[str, np.ndarray],
    test_speakers: Sequence[str],
    stylized: bool,
) -> tuple[dict, dict[str, float | None]]:
    """The eval artifact's content (every space, test and train probes, w_s summaries) and its
    metrics: ``style_retrieval_top1`` (triplet space, test clips) with its chance level, and the
    top-1 of the other spaces and of the training clips."""
    report = retrieval_report(train, train_speakers, test, test_speakers)
    content = {
        "stylized": stylized,  # False: the animating stage never ran, E_s is as initialised
        "protocol": "nearest speaker centroid (Euclidean); training speakers enrolled by their training "
        "clips, unseen speakers by their other test clips; a probe is left out of its own centroid",
        "spaces": report,
        "style_weights": {
            split: _weights_summary(x["weights"]) for split, x in (("train", train), ("test", test))
        },
    }
    metrics = {
        "style_retrieval_top1": report["triplet"]["test"]["top1"],
        "style_retrieval_chance": report["triplet"]["test"]["chance"],
        "style_retrieval_top1_train": report["triplet"]["train"]["top1"],
        "style_retrieval_top1_weights": report["weights"]["test"]["top1"],
        "style_retrieval_top1_log_mel": report["log_mel"]["test"]["top1"],
        "style_weight_mean_test": content["style_weights"]["test"]["mean"],
    }
    return content, metrics
