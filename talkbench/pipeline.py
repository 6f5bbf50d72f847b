"""One run end to end: tracking check -> data -> method -> stages -> predictions -> metrics -> tracking.

The tracking store is checked (and the dataset's experiment created) before any data is loaded or
any epoch is trained, so a bad ``--tracking-uri`` fails in a second with the reason. Every run gets a
directory ``$TALKBENCH_HOME/runs/<MLflow run id>/`` with its config, ``run.json`` (its store) and the
engine's checkpoints; ``--resume`` reads them back and reopens the same MLflow run, whose status is
the one record of how the run stands.

After training, talkbench.scoring predicts the evaluation split (one predict_conditions call per
clip), scores it and logs the scores; importing an official checkpoint shares that step.

A run on a mixture of datasets (``--dataset a,b``, datasets/mixture.py) trains on batches of every
member, then scores each member on its own evaluation split (``test/<member>/<metric>``); it logs to
the experiment ``a+b`` with the members and weights in ``Tag.MIXTURE``. Its MLflow model is not
logged (a model bundle holds one dataset's spec).
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from talkbench import contract, distributed, paths, scoring, tracking, weights_ref
from talkbench.config import RunConfig
from talkbench.contract import Tag
from talkbench.errors import ConfigError, Interrupted, TalkbenchError

log = logging.getLogger(__name__)

@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    tracking_uri: str
    experiment: str
    metrics: dict[str, float]  # the logged test metrics (``test/<name>``) and the speed
    inference_speed: float  # seconds of animation per second of compute
    n_predictions: int
    evaluation: Any = None  # talkbench.metrics.Evaluation
    train: Any = None  # talkbench.engine.TrainResult
    rank: int = 0  # under torchrun: only rank 0 (which logged everything) has metrics


# -- data and method ----------------------------------------------------------------------------
def build_method(cfg: RunConfig, spec):
    """The method on ``spec`` (a MixtureSpec: as its ``Method.mixture`` says, methods/mixture.py)."""
    from talkbench.checkpoint import seed_everything
    from talkbench.methods import mixture
    from talkbench.registry import METHODS

    cls = METHODS.get(cfg.method)
    seed_everything(cfg.seed)  # weight initialisation is part of what the seed fixes
    return mixture.build(cls, cfg.method_config, spec)


def ensure_encoder(cfg: RunConfig, tracker) -> dict[str, Any]:
    """Make the default pretrained speech encoder on first use (its own MLflow run), before the method
    loads it; returns provenance tags (cache key, pretraining run id), empty for other encoders."""
    from talkbench.audio.config import AudioEncoderConfig
    from talkbench.speech_pretrain.cache import ensure_for_audio

    audio = getattr(cfg.method_config, "audio", None)
    if isinstance(audio, dict):  # CodeTalker keeps its audio settings as a plain mapping
        audio = AudioEncoderConfig(**audio)
    result = ensure_for_audio(audio, tracker=tracker)
    if result is None:
        return {}
    return {Tag.ENCODER_KEY: result.meta.get("key", ""), Tag.ENCODER_RUN_ID: result.meta.get("run_id", "")}


def resolved_device(cfg: RunConfig) -> str:
    if cfg.device != "auto":
        return cfg.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# -- names, descriptions and tags ---------------------------------------------------------------
def config_overrides(cfg: RunConfig) -> dict[str, Any]:
    """Settings of ``cfg`` that differ from its preset as loaded without overrides (``--set``,
    ``--config``), as dotted key -> value; the seed, device and data root are not among them."""
    from talkbench.config import load_config

    try:
        base = load_config(cfg.method, dataset=cfg.dataset.name, preset=cfg.preset).identity()
    except TalkbenchError:  # a preset that no longer resolves: every non-default setting is shown
        base = {}
    mine = cfg.identity()
    flat = cfg.flatten()
    out = {k: v for k, v in mine.items() if base.get(k, object()) != v}
    out.update({k: flat.get(k, "default") for k in base if k not in mine})
    for key in [k for k, v in out.items() if isinstance(v, dict) and isinstance(base.get(k), dict)]:
        out.update(_changed_entries(key, base[key], out.pop(key)))  # a dict field: only what changed
    return dict(sorted(out.items()))


def _changed_entries(key: str, base: dict, mine: dict) -> dict[str, Any]:
    """``key.entry`` -> value for the entries of a dict-valued setting that differ from the preset's."""
    missing = object()
    return {
        f"{key}.{k}": mine.get(k, "default")
        for k in sorted({*base, *mine}, key=str)
        if base.get(k, missing) != mine.get(k, missing)
    }


def _short_key(cfg: RunConfig, key: str) -> str:
    return key.removeprefix(f"{cfg.method}.")


def run_name(cfg: RunConfig, overrides: dict[str, Any] | None = None) -> str:
    """``method/preset/seedN`` plus the overrides, so runs that differ in a setting differ in name."""
    overrides = config_overrides(cfg) if overrides is None else overrides
    name = f"{cfg.method}/{cfg.preset}/seed{cfg.seed}"
    if overrides:
        name += " " + ",".join(f"{_short_key(cfg, k)}={v}" for k, v in overrides.items())
    if len(name) > 240:  # MLflow keeps 250 chars; the hash keeps cut names distinct
        name = f"{name[:220]}… {cfg.config_hash()[:8]}"
    return name


def run_note(cfg: RunConfig, overrides: dict[str, Any], metrics: dict[str, float] | None = None) -> str:
    """The run's description (``mlflow.note.content``, Markdown): what ran and, once done, its scores."""
    on = cfg.dataset.name
    if cfg.dataset.is_mixture:
        on = " + ".join(f"{m} (×{w:g})" for m, w in _mixture_weights(cfg).items())
    lines = [
        f"**{cfg.method}** on **{on}**, preset `{cfg.preset}`, seed {cfg.seed}",
        "",
        "Overrides: " + (", ".join(f"`{k}={v}`" for k, v in overrides.items()) if overrides else "none"),
    ]
    if metrics:
        lines += ["", "| metric | value | 95% CI |", "|---|---|---|"]
        for key, value in metrics.items():
            name = key.removeprefix(contract.TEST_PREFIX)
            if key == name or "/" in name or key.endswith(("_ci_low", "_ci_high")):
                continue  # headline metrics only: not the per-condition spreads, not the bounds
            lo, hi = metrics.get(contract.test_ci_low(name)), metrics.get(contract.test_ci_high(name))
            ci = f"[{lo:.4g}, {hi:.4g}]" if lo is not None and hi is not None else ""
            lines.append(f"| {name} | {value:.4g} | {ci} |")
    return "\n".join(lines)


def _mixture_weights(cfg: RunConfig) -> dict[str, float]:
    from talkbench.datasets.mixture import weights_of

    return weights_of(cfg.dataset.members, cfg.dataset.weights)


def members_of(data) -> dict[str, Any]:
    """Member name -> its dataset: a mixture's members, or ``{None: data}`` for one dataset."""
    return dict(getattr(data, "members", None) or {None: data})


def train_clips_tag(data) -> str:
    """``Tag.TRAIN_CLIPS``: the clips of the training split (after ``dataset.train_fraction``)."""
    counts = {m: len(one.split("train")) for m, one in members_of(data).items()}
    if None in counts:
        return str(counts[None])
    return contract.mixture_tag(counts)


def torch_threads() -> int:
    """Intra-op CPU threads (OMP_NUM_THREADS, else the core count): the partition of every parallel
    reduction, so a seed reproduces a run's metrics bit for bit only at the same count."""
    import torch

    return torch.get_num_threads()


def run_tags(cfg: RunConfig, device: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    git = tracking.git_info()
    overrides = config_overrides(cfg) if overrides is None else overrides
    tags: dict[str, Any] = {
        Tag.KIND: contract.Kind.RUN,
        Tag.METHOD: cfg.method,
        Tag.DATASET: cfg.dataset.experiment,
        Tag.PRESET: cfg.preset,
        Tag.SEED: cfg.seed,
        Tag.DEVICE: device,
        Tag.THREADS: torch_threads(),
        Tag.CONFIG_HASH: cfg.config_hash(),
        Tag.GIT_COMMIT: git["commit"],
        Tag.GIT_DIRTY: git["dirty"],
        Tag.RUN_NAME: run_name(cfg, overrides),
        Tag.NOTE: run_note(cfg, overrides),
        Tag.SOURCE_NAME: "bench run",
        Tag.SOURCE_TYPE: "LOCAL",
    }
    if git["commit"] != "unknown":
        tags[Tag.SOURCE_GIT_COMMIT] = git["commit"]
    if cfg.dataset.is_mixture:
        tags[Tag.MIXTURE] = contract.mixture_tag(_mixture_weights(cfg))
    tags.update({Tag.version(k): v for k, v in tracking.package_versions().items()})
    return tags


# -- resume -------------------------------------------------------------------------------------
def resume_target(run_id: str, tracking_uri: str | None = None) -> tuple[str, RunConfig, str]:
    """``(run id, saved config, tracking URI)`` for ``--resume RUN_ID`` or ``--resume last`` (the newest
    interrupted run); ``tracking_uri`` replaces the store saved in the run's record (a moved store).
    The run's MLflow status decides: a FINISHED run has nothing left to resume."""
    if run_id == "last":
        run_id = tracking.last_interrupted_run(resumable=_has_checkpoint, tracking_uri=tracking_uri)
    record = tracking.read_run_record(run_id)
    uri = tracking.resolve_tracking_uri(tracking_uri or record.get("tracking_uri"))
    if tracking.Tracker(uri, create=False).get_run(run_id).info.status == "FINISHED":
        raise TalkbenchError(f"nothing to resume: run {run_id} already finished")
    config_path = paths.run_dir(run_id) / paths.RUN_CONFIG
    if not config_path.is_file():
        raise TalkbenchError(f"--resume {run_id}: {config_path} is missing; cannot rebuild the run's config")
    return run_id, RunConfig.load(config_path), uri


def _has_checkpoint(run_id: str) -> bool:
    from talkbench.checkpoint import last_checkpoint

    return last_checkpoint(paths.run_dir(run_id) / contract.CHECKPOINTS_DIR) is not None


def _check_resumable(run_id: str) -> None:
    """Resuming needs a checkpoint: without one the run would train again from epoch 0 on top of the
    epochs it already logged. Checked before the MLflow run is reopened, so nothing is logged."""
    if not _has_checkpoint(run_id):
        ckpt_dir = paths.run_dir(run_id) / contract.CHECKPOINTS_DIR
        raise TalkbenchError(
            f"nothing to resume: run {run_id} has no checkpoint in {ckpt_dir} (it stopped before its "
            "first one); start a new run without --resume"
        )


# -- the run's life cycle -----------------------------------------------------------------------
def validate_data(data, spec, eval_split: str) -> None:
    """Everything about the dataset that can be checked without training, before a run exists:
    every split's clips are probed (files, headers, lengths, templates) and the training and
    evaluation splits are non-empty (the loader already hashed every file for the digest). Raises
    DataError naming the file; NaN checks of the vertices stay on first access (they read every frame)."""
    from talkbench.errors import DataError

    for name in spec.splits:
        if len(data.split(name)) == 0 and name in ("train", eval_split):
            what = "the training split" if name == "train" else f"the evaluation split '{name}'"
            raise DataError(
                f"dataset {spec.name} ({getattr(data, 'root', '?')}): {what} has no clips "
                f"(eval.split picks another: {', '.join(spec.splits)})"
            )


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM outside training ends the run like Ctrl-C (KILLED, not left RUNNING); the engine's own
    handler takes over while training and restores this one after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum, frame):
        raise Interrupted(signal.Signals(signum).name, None)

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _end_run(tracker, run_id: str, status: str, exc: BaseException) -> None:
    """Mark the run FAILED/KILLED; when the store itself went away there is nobody to tell."""
    if isinstance(exc, tracking.TrackingUnavailable):
        return
    with contextlib.suppress(Exception):
        tracker.finish_run(run_id, status)


# -- the run ------------------------------------------------------------------------------------
def run(
    cfg: RunConfig,
    tracking_uri: str | None = None,
    resume: str | None = None,
    parent_run_id: str | None = None,
    progress: bool = True,
) -> RunResult:
    """Train, predict, evaluate and log one run; returns its ids and metrics.

    ``resume``: the MLflow run id to continue (its run directory must exist; the engine continues
    from the last checkpoint there). ``parent_run_id`` nests the run (sweeps). On SIGINT/SIGTERM the
    engine raises ``errors.Interrupted`` after saving a checkpoint: the MLflow run is marked KILLED
    (``--resume last`` picks it up) and the exception propagates with ``run_id`` set (a plain
    KeyboardInterrupt outside the engine is turned into one).

    Under ``torchrun`` every rank calls this: rank 0 creates (or reopens) the one MLflow run and
    shares its id; the other ranks train their shard under that id and log nothing (``_follow``).
    """
    if resume is not None and not isinstance(resume, str):
        raise ConfigError("resume: pass the run id to continue (or use resume_target('last'))")
    with _sigterm_interrupts():
        dinfo = distributed.setup(use_cuda=resolved_device(cfg).startswith("cuda"))  # no-op outside torchrun
        try:
            if not dinfo.is_main:
                return _follow(cfg, dinfo, tracking_uri, resume)
            with distributed.RunAnnouncer(dinfo) as announcer:
                return _run(cfg, tracking_uri, resume, parent_run_id, progress, announcer)
        finally:
            distributed.teardown(dinfo)


def _follow(cfg: RunConfig, dinfo, tracking_uri: str | None, resume: str | None) -> RunResult:
    """A torchrun rank other than 0: the run rank 0 created, its shard of training, nothing logged.

    Checkpoints are written by rank 0 and read by every rank from the run directory, so a multi-node
    job needs TALKBENCH_HOME on a filesystem that every node mounts.
    """
    from talkbench.engine import train

    run_id = distributed.receive_run_id(dinfo)
    data = cfg.dataset.load()
    # the weights a run reference names were fetched by rank 0, before it shared the run id
    method = build_method(weights_ref.with_local_weights(cfg, tracking_uri=tracking_uri), data.spec)
    rdir = paths.run_dir(run_id)
    try:
        result = train(method, data, cfg, rdir, logger=None, resume=resume is not None, progress=False)
    except Interrupted as exc:
        exc.run_id = run_id
        raise
    distributed.replica_digest(method, dinfo)  # rank 0 checks that every replica agrees and logs it
    uri = tracking.resolve_tracking_uri(tracking_uri)
    experiment = cfg.dataset.experiment
    return RunResult(run_id, rdir, uri, experiment, {}, math.nan, 0, train=result, rank=dinfo.rank)


def _run(cfg: RunConfig, tracking_uri, resume, parent_run_id, progress: bool, announcer=None) -> RunResult:
    # 1. the store first: unreachable servers and unwritable paths fail before anything else
    tracker = tracking.Tracker(tracking_uri)
    experiment = cfg.dataset.experiment
    experiment_id = tracker.ensure_experiment(experiment)
    if resume is not None:
        tracker.get_run(resume)  # clear error if the store does not know it
        _check_resumable(resume)

    # 2. data and method (bad data, unknown methods fail here, before a run exists)
    from talkbench.methods import mixture
    from talkbench.registry import METHODS

    mixture.check(METHODS.get(cfg.method), cfg.dataset.members)  # one that cannot take a mixture: first
    data = cfg.dataset.load()
    spec = data.spec
    n_eval = 0
    for one in members_of(data).values():
        eval_split = cfg.eval.split_for(one.spec)
        validate_data(one, one.spec, eval_split)
        n_eval = max(n_eval, len(one.split(eval_split)))
    # the sizes fit in memory (the model built on the meta device): refused here with the numbers,
    # not by an allocation error or the OOM killer during training
    from talkbench import memory_budget

    memory_budget.check_run(cfg, spec, resolved_device(cfg), n_eval)
    encoder_tags = ensure_encoder(cfg, tracker)
    method = build_method(weights_ref.with_local_weights(cfg, tracker), spec)  # finetune_head=RUN_ID
    device = resolved_device(cfg)
    tags = {**run_tags(cfg, device), **encoder_tags} if resume is None else {}

    # 3. the MLflow run and its directory: from here on every exit finishes the run
    if resume is not None:
        run_id = resume
        tracker.reopen_run(run_id)
    else:
        run_id = tracker.create_run(experiment_id, tags=tags, parent_run_id=parent_run_id)
    rdir = paths.run_dir(run_id)
    if announcer is not None:
        announcer.share(run_id)  # the other torchrun ranks (if any) train under this run
    try:
        if resume is not None:
            tracker.set_tags(run_id, {Tag.DEVICE: device, Tag.RESUMED: "true"})
        rdir = tracking.write_run_record(run_id, tracking_uri=tracker.uri)
        with tracker.system_metrics(run_id, resumed=resume is not None):
            result = _run_inside(tracker, run_id, rdir, cfg, data, spec, method, resume is not None, progress)
        tracker.set_tags(run_id, {Tag.NOTE: run_note(cfg, config_overrides(cfg), result.metrics)})
        tracker.finish_run(run_id, "FINISHED")
    except KeyboardInterrupt as exc:
        _end_run(tracker, run_id, "KILLED", exc)
        if not isinstance(exc, Interrupted) or (exc.checkpoint is None and exc.epoch is None):
            # stopped outside the engine's handler (evaluation, SIGTERM while predicting): name the
            # last checkpoint the engine left, if any
            from talkbench.checkpoint import last_checkpoint

            last = last_checkpoint(rdir / contract.CHECKPOINTS_DIR)
            name = exc.signal_name if isinstance(exc, Interrupted) else "SIGINT"
            exc = Interrupted(name, str(last) if last else None)
        exc.run_id = run_id
        raise exc from None
    except BaseException as exc:
        _end_run(tracker, run_id, "FAILED", exc)
        raise
    result.experiment = experiment
    return result


def _log_replicas(tracker, run_id: str, method) -> None:
    """Under torchrun: how many ranks trained, and the weights digest they all ended with."""
    dinfo = distributed.setup(use_cuda=False)  # the group run() joined; nothing new is created
    if dinfo.enabled:
        digest = distributed.replica_digest(method, dinfo)
        tracker.set_tags(run_id, {Tag.WORLD_SIZE: dinfo.world_size, Tag.REPLICA_DIGEST: digest})


def _run_inside(tracker, run_id, rdir: Path, cfg, data, spec, method, resumed: bool, progress: bool):
    from talkbench.engine import train

    logger = tracking.MlflowLogger(tracker, run_id)
    config_path = cfg.save(rdir / paths.RUN_CONFIG)
    if not resumed:
        tracker.log_params(run_id, cfg.params())
        tracker.log_artifact(run_id, config_path)
        for one in members_of(data).values():
            root = getattr(one, "root", None) or cfg.dataset.root or one.spec.name
            # one input per dataset: MLflow keeps a single association per (run, dataset)
            tracker.log_dataset(run_id, one.spec.name, root, one.spec.digest, context="train+test")
        clips = train_clips_tag(data)
        tracker.set_tags(run_id, {Tag.TRAIN_CLIPS: clips})
        log.info("training clips: %s (dataset.train_fraction %g)", clips, cfg.dataset.train_fraction)
        git = tracking.git_info()
        if git["diff"]:
            tracker.log_text(run_id, git["diff"][: 5 << 20], contract.GIT_DIFF_ARTIFACT)

    # 4. training (checkpoints in the run dir; the final weights are logged by the engine)
    train_result = train(method, data, cfg, rdir, logger=logger, resume=resumed, progress=progress)
    _log_replicas(tracker, run_id, method)
    # what the run cost: training wall time over all stages (resumes included: the checkpoint carries it)
    tracker.log_metrics(run_id, {contract.speed_metric("train_s"): sum(train_result.stage_seconds.values())})

    # 5. predictions on the evaluation split, scored as they come; metrics, tables, tags, renders
    # (of a mixture: each member on its own split, its keys test/<member>/...)
    scores = {}
    for member, one in members_of(data).items():
        with method.member(member):
            scores[member] = scoring.score(tracker, run_id, cfg, method, one, rdir, member)
    if train_result.resumed_from:
        tracker.set_tags(run_id, {Tag.RESUMED_FROM_EPOCH: train_result.resumed_from})
    if None in scores:
        # 6. the MLflow model (pyfunc; registered as cfg.eval.register): predicts without the dataset
        from talkbench.mlflow_model import log_run_model

        log_run_model(tracker, run_id, cfg, method, data, rdir)
    evaluations = {m: x.evaluation for m, x in scores.items()}
    timing = scoring.Timing(sum(s.timing.compute_s for s in scores.values()),
                            sum(s.timing.animation_s for s in scores.values()))  # fmt: skip
    return RunResult(
        run_id=run_id,
        run_dir=rdir,
        tracking_uri=tracker.uri,
        experiment=cfg.dataset.experiment,
        metrics={k: v for s in scores.values() for k, v in s.metrics.items()},
        inference_speed=timing.speed,
        n_predictions=sum(s.n_predictions for s in scores.values()),
        # one dataset: its Evaluation; a mixture: member -> Evaluation
        evaluation=evaluations.get(None, evaluations),
        train=train_result,
    )
