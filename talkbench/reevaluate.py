"""A run's logged model re-predicting its test split under other inference settings, as its own run
(``bench eval --run RUN_ID --set ...``): samplers compared on one trained model without retraining.

The run's saved config with the ``--set`` overrides (say ``facediffuser.sampler=ddim-50`` and
``eval.sample_seed=1``, another seed set of the samples) builds the method; the run's verified
weights load into it strictly, so an override that changes the architecture fails before a run
exists. Prediction, scoring and logging are the trained run's (:func:`talkbench.scoring.score`);
the new run is tagged ``Kind.EVAL``, ``Tag.EVAL_OF`` (and MLflow's parent: it nests under the run),
its sampler and seed set, and, its config hash differing, has its own leaderboard row.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from talkbench import contract, paths, pipeline, scoring, tracking
from talkbench.contract import Tag
from talkbench.errors import ConfigError, TalkbenchError

# what the re-prediction must not change: it would misdescribe the trained model
_FIXED = ("seed", "dataset.", "train.")


@dataclass
class EvalResult:
    run_id: str
    of_run: str
    experiment: str
    tracking_uri: str
    metrics: dict[str, float]


def reevaluate(
    run: str, overrides: Iterable[str] = (), tracking_uri: str | None = None,
    data_root: str | Path | None = None,
) -> EvalResult:
    from talkbench import load_model
    from talkbench.config import RunConfig, load_config
    from talkbench.registry import METHODS
    from talkbench.runs import TrackedRun

    overrides = list(overrides)
    for item in overrides:
        key = item.partition("=")[0].strip()
        if key.startswith(_FIXED):
            raise ConfigError(
                f"--set {item}: re-predicting run {run} keeps its seed, dataset and training settings; "
                "another seed set of the samples is --set eval.sample_seed=K"
            )
    tracked = TrackedRun.open(run, tracking_uri)
    saved = tracked.tracker.download_artifacts(tracked.run_id, contract.CONFIG_ARTIFACT)
    logged = RunConfig.load(saved)
    if logged.dataset.is_mixture:
        raise TalkbenchError(f"run {tracked.run_id} trained on a mixture: re-predicting it is not supported")
    cfg = load_config(logged.method, preset=logged.preset, config_file=saved, overrides=overrides,
                      data_root=data_root)
    data = cfg.dataset.load()
    trained = load_model(tracked.run_id, tracked.tracker.uri).method
    method = METHODS.get(cfg.method)(cfg.method_config, data.spec)
    try:
        method.load_state_dict(trained.state_dict())
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(
            f"--set {' '.join(overrides)}: the model no longer fits run {tracked.run_id}'s weights "
            f"({first}); only inference settings can change"
        ) from None
    device = pipeline.resolved_device(cfg)
    method = method.to(device).eval()

    tracker = tracking.Tracker(tracked.tracker.uri)
    tags = pipeline.run_tags(cfg, device)
    sampler = getattr(cfg.method_config, "sampler_id", None)
    label = "-".join(str(x) for x in (sampler, f"s{cfg.eval.sample_seed_for(cfg.seed)}") if x is not None)
    tags.update({
        Tag.KIND: contract.Kind.EVAL,
        Tag.EVAL_OF: tracked.run_id,
        Tag.SOURCE_NAME: "bench eval",
        Tag.RUN_NAME: f"{tags[Tag.RUN_NAME]}/eval-{label}",
    })
    experiment_id = tracker.ensure_experiment(cfg.dataset.experiment)
    run_id = tracker.create_run(experiment_id, tags=tags, parent_run_id=tracked.run_id)
    rdir = tracking.write_run_record(run_id, tracking_uri=tracker.uri)
    try:
        config_path = cfg.save(rdir / paths.RUN_CONFIG)
        tracker.log_params(run_id, cfg.params())
        tracker.log_artifact(run_id, config_path)
        metrics = scoring.score(tracker, run_id, cfg, method, data).metrics
    except BaseException:
        tracker.finish_run(run_id, "FAILED")
        raise
    tracker.finish_run(run_id, "FINISHED")
    return EvalResult(run_id, tracked.run_id, cfg.dataset.experiment, tracker.uri, metrics)
