"""The tracked-run contract: every name a run writes to MLflow and every reader relies on.

Writers (pipeline, sweep, tracking, study) and readers (runs, reports, render, study, eval) import
these names; none of them spells a tag key, metric name, artifact path or prediction file name as a
literal. Pure data and string functions: importing this module imports neither mlflow nor torch.

- one experiment per dataset, named after the dataset (a mixture's: ``a+b``, its members' metrics
  ``test/<member>/<metric>``, its members and weights in ``Tag.MIXTURE``; see :func:`for_member`);
- params: the flattened resolved config (dotted keys);
- metrics: per-epoch losses ``<stage>/<term>`` (step = epoch; validation ``<stage>/val_<term>``),
  final test metrics ``test/<metric>``, inference speed ``speed/realtime_factor``, the speed
  profile ``speed/<name>`` of talkbench.speed and a method's own diagnostics ``diagnostic/<name>``;
- tags: the ``Tag`` keys below;
- artifacts: the ``*_ARTIFACT`` / ``*_DIR`` paths below; predictions are
  ``predictions/<clip>.npy`` or ``predictions/<clip>_condition_<Subject>.npy`` ((T, V*3) float32).
"""

from __future__ import annotations

from dataclasses import dataclass

TAG_PREFIX = "talkbench."


class Tag:
    """Tag keys of talkbench runs (``talkbench.*``) and the MLflow system tags talkbench reads."""

    KIND = "talkbench.kind"  # one of Kind
    METHOD = "talkbench.method"
    DATASET = "talkbench.dataset"
    PRESET = "talkbench.preset"
    SEED = "talkbench.seed"
    DEVICE = "talkbench.device"
    CONFIG_HASH = "talkbench.config_hash"
    GIT_COMMIT = "talkbench.git_commit"
    GIT_DIRTY = "talkbench.git_dirty"
    RESUMED = "talkbench.resumed"
    RESUMED_FROM_EPOCH = "talkbench.resumed_from_epoch"
    INFERENCE_SPEED = "talkbench.inference_speed"
    REGION_DIGEST = "talkbench.region_digest"
    DATASET_DIGEST = "talkbench.dataset_digest"
    RENDER_ERROR = "talkbench.render_error"
    WORLD_SIZE = "talkbench.world_size"  # processes that trained the run (torchrun)
    REPLICA_DIGEST = "talkbench.replica_digest"  # sha256 of the weights every rank ended with
    SOURCE = "talkbench.source"  # a user study's folder
    ENCODER_KEY = "talkbench.encoder_key"  # a pretrained speech encoder's cache key (speech_pretrain)
    ENCODER_RUN_ID = "talkbench.encoder_run_id"  # the MLflow run that pretrained that encoder
    SAMPLES = "talkbench.samples"  # N drawn per test clip and condition (1: a deterministic method)
    SAMPLE_SEED = "talkbench.sample_seed"  # the seed set of those samples (eval.sample_seed or the seed)
    SAMPLER = "talkbench.sampler"  # what drew them, where the method names it (``ancestral-1000``, ...)
    EVAL_OF = "talkbench.eval_of"  # an eval run (Kind.EVAL): the run whose logged model it re-predicted
    # a run on a mixture of datasets: its members and sampling weights, "a=1,b=2" (datasets/mixture.py)
    MIXTURE = "talkbench.mixture"
    # the training clips a run used (dataset.train_fraction of them): N, or a mixture's "a=N,b=M"
    TRAIN_CLIPS = "talkbench.train_clips"
    THREADS = "talkbench.threads"  # torch intra-op CPU threads: float sums, hence metrics, depend on it
    # runs made by `bench import` from an official checkpoint (value: contract.IMPORTED_OFFICIAL)
    IMPORTED = "talkbench.imported"
    LICENCE = "talkbench.licence"  # an imported checkpoint's licence where it restricts use
    CHECKPOINT = "talkbench.checkpoint"  # the imported file(s): name and sha256
    REGISTERED_MODEL = "talkbench.registered_model"  # models:/NAME/VERSION of a run's model
    MODEL_FILES = "talkbench.model_files"  # name:sha256=HEX of every file of the run's model folder
    # sweep parents
    SWEEP_HASH = "talkbench.sweep_hash"
    GRID = "talkbench.grid"
    SEEDS = "talkbench.seeds"
    POINT_RUNS = "talkbench.point_runs"
    # MLflow's own
    RUN_NAME = "mlflow.runName"
    PARENT_RUN_ID = "mlflow.parentRunId"
    NOTE = "mlflow.note.content"  # the run's (and experiment's) description in the UI
    SOURCE_NAME = "mlflow.source.name"
    SOURCE_TYPE = "mlflow.source.type"
    SOURCE_GIT_COMMIT = "mlflow.source.git.commit"
    EXPERIMENT_KIND = "mlflow.experimentKind"  # experiment tag: which UI page opens the experiment

    @staticmethod
    def version(package: str) -> str:
        return f"talkbench.version.{package}"

    @staticmethod
    def params(module: str) -> str:
        """Parameter count of one top-level module (``total`` for all)."""
        return f"talkbench.params.{module}"

    @staticmethod
    def encoder(field: str) -> str:
        """The speech encoder a run predicted with (audio/provenance.py): name, kind, checkpoint,
        pretrained, weights_digest, frozen_digest, frozen, layer."""
        return f"talkbench.encoder.{field}"

    @staticmethod
    def metric_version(metric: str) -> str:
        return f"talkbench.metric_version.{metric}"

    @staticmethod
    def scale(metric: str) -> str:
        """The table scale a metric is shown divided by."""
        return f"talkbench.scale.{metric}"


# value of Tag.EXPERIMENT_KIND on talkbench experiments: the UI opens the runs table, not GenAI traces
EXPERIMENT_KIND = "custom_model_development"


class Kind:
    """Values of ``Tag.KIND``."""

    RUN = "run"
    SWEEP = "sweep"
    EVAL = "eval"  # `bench eval --run`: a run's logged model re-predicting its test split (reevaluate.py)
    USER_STUDY = "user-study"


def column(tag: str) -> str:
    """The column of a tag in ``mlflow.search_runs`` DataFrames."""
    return f"tags.{tag}"


# -- metrics --------------------------------------------------------------------------------------
TEST_PREFIX = "test/"
SPEED_METRIC = "speed/realtime_factor"  # seconds of animation per second of compute, over the test split
SPEED_PREFIX = "speed/"


def speed_metric(name: str) -> str:
    """``speed/<name>``: a column of the one timing function (talkbench.speed) on a 10 s clip."""
    return f"{SPEED_PREFIX}{name}"


HEADLINE_METRICS = ("lve", "mve", "fdd")  # the leaderboard's default columns, a sweep's and a model card's


DIAGNOSTIC_PREFIX = "diagnostic/"


def diagnostic_metric(name: str) -> str:
    """``diagnostic/<name>``: a figure of a method's own diagnostic (``Method.diagnostics``)."""
    return f"{DIAGNOSTIC_PREFIX}{name}"


def test_metric(name: str) -> str:
    return f"{TEST_PREFIX}{name}"


def test_ci_low(name: str) -> str:
    """Lower bound of a test metric's bootstrap CI, named so the UI lists it beside ``test/<name>``."""
    return f"{TEST_PREFIX}{name}_ci_low"


def test_ci_high(name: str) -> str:
    return f"{TEST_PREFIX}{name}_ci_high"


def for_member(key: str, member: str | None) -> str:
    """A metric, tag or artifact key of one member of a mixture: ``test/lve`` -> ``test/<member>/lve``,
    ``eval/per_sequence.csv`` -> ``eval/<member>/per_sequence.csv``, ``predictions`` ->
    ``<member>/predictions``, a tag ``talkbench.scale.lve`` -> ``talkbench.scale.lve/<member>``;
    unchanged for None."""
    if member is None:
        return key
    if key.startswith(TAG_PREFIX):
        return f"{key}/{member}"
    head, sep, rest = key.partition("/")
    return f"{head}/{member}/{rest}" if sep else f"{member}/{key}"


def mixture_tag(weights: dict[str, float]) -> str:
    """``Tag.MIXTURE``'s value: ``a=1,b=2`` in the run's order."""
    return ",".join(f"{m}={w:g}" for m, w in weights.items())


def parse_mixture_tag(value: str) -> dict[str, float]:
    """The inverse of :func:`mixture_tag`."""
    out = {}
    for item in value.split(","):
        name, _, weight = item.partition("=")
        out[name] = float(weight)
    return out


def sweep_grid_param(key: str) -> str:
    """A sweep parent's param holding one grid axis (the values, comma separated)."""
    return f"grid.{key}"


def metric_column(metric_key: str) -> str:
    """The column of a logged metric in ``mlflow.search_runs`` DataFrames."""
    return f"metrics.{metric_key}"


def param_column(param: str) -> str:
    """The column of a logged param (a dotted config key) in ``mlflow.search_runs`` DataFrames."""
    return f"params.{param}"


def stage_metric(stage: str, term: str) -> str:
    return f"{stage}/{term}"


# -- artifacts ------------------------------------------------------------------------------------
CONFIG_ARTIFACT = "config.yaml"
PER_SEQUENCE_ARTIFACT = "eval/per_sequence.csv"
SUMMARY_ARTIFACT = "eval/summary.csv"
PREDICTIONS_DIR = "predictions"  # (T, V*3) vertices; of a blendshape method, its weights through the rig
WEIGHT_PREDICTIONS_DIR = "predictions_blendshapes"  # (T, K) weights of a blendshape method, same file names
RENDERS_DIR = "renders"
# a method that samples: (N, T, V*3) float32 per prediction, same file names; sample 0 is the one in
# predictions/; the seed of every sample of every clip and condition (columns SAMPLE_SEED_COLUMNS)
SAMPLE_PREDICTIONS_DIR = "predictions_samples"
SAMPLE_SEEDS_ARTIFACT = "eval/sample_seeds.csv"
SAMPLE_SEED_COLUMNS = ("clip", "condition", "sample", "seed")
SAMPLE_SPREAD_ARTIFACT = "eval/sample_spread.csv"  # clip, condition, frame, spread (lips, u)


def diagnostic_artifact(name: str) -> str:
    """``eval/<name>.json``: a method's own diagnostic of its trained model (e.g. style_retrieval)."""
    return f"eval/{name}.json"


CHECKPOINTS_DIR = "checkpoints"
GIT_DIFF_ARTIFACT = "provenance/git.diff"
MODEL_ARTIFACT = "model"  # the MLflow model (pyfunc): runs:/<run id>/model
RUNS_SCHEME, MODELS_SCHEME = "runs:/", "models:/"  # model references: runs:/ID/model, models:/NAME/V
IMPORTED_OFFICIAL = "official"  # Tag.IMPORTED value; the leaderboard labels such rows OFFICIAL_LABEL
OFFICIAL_LABEL = "official checkpoint"

# -- prediction files -----------------------------------------------------------------------------
CONDITION_SEP = "_condition_"
PREDICTION_SUFFIX = ".npy"


@dataclass(frozen=True)
class PredictionName:
    clip: str
    condition: str | None  # a training speaker's name, or None for unconditioned methods


def prediction_file(clip: str, condition: str | None = None) -> str:
    """``<clip>.npy`` or ``<clip>_condition_<Subject>.npy``."""
    stem = clip if condition is None else f"{clip}{CONDITION_SEP}{condition}"
    return stem + PREDICTION_SUFFIX


def parse_prediction_file(filename: str) -> PredictionName:
    """The inverse of :func:`prediction_file` (a directory part, if any, is ignored)."""
    name = filename.rsplit("/", 1)[-1]
    stem = name[: -len(PREDICTION_SUFFIX)] if name.endswith(PREDICTION_SUFFIX) else name
    clip, sep, condition = stem.rpartition(CONDITION_SEP)
    if sep and clip and condition:
        return PredictionName(clip, condition)
    return PredictionName(stem, None)


# -- mixtures of datasets (datasets/mixture.py)
MIXTURE_SEP = ","  # ``--dataset a,b``: the members of a mixture, as the config names it
MIXTURE_JOIN = "+"  # ``a+b``: the mixture's own name (its experiment, its dataset tag)


def mixture_members(name: str) -> list[str]:
    """The member datasets a dataset name lists (``a,b`` or ``a+b``); one name for a single dataset."""
    return [m.strip() for m in name.replace(MIXTURE_JOIN, MIXTURE_SEP).split(MIXTURE_SEP)]


def mixture_name(members) -> str:
    return MIXTURE_JOIN.join(members)
