"""The conformance kit: does a Method keep the contract the engine, scoring and bundles rely on?

``check_method(cls_or_name, preset="tiny")`` builds the method on SynthTalk tiny with that preset and
runs every check of :data:`CHECKS`; it returns the names of the checks that passed and raises one
:class:`ConformanceError` listing every failure, each naming the hook and what was expected.

Tolerances: two code paths that must agree (a padded and an unpadded batch, ``predict_conditions`` and
the loop over ``predict``, a reloaded model) are compared at ``atol`` / ``rtol`` (float32 rounding of
different summation orders and batch shapes, never a different result); the same call repeated under
one seed must repeat exactly.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from talkbench.datasets.batch import Batch
from talkbench.datasets.targets import BLENDSHAPES
from talkbench.methods.base import Method, Stage

ATOL = 1e-5
RTOL = 1e-4
ODD_FRAMES = (7, 12)  # motion frames of the odd-length clips of the shape check
ODD_EXTRA_SAMPLES = (37, 211)  # samples past a whole frame: lengths no fps divides
EXTRA_PAD_FRAMES = 5  # frames of extra padding in the padding check


class ConformanceError(AssertionError):
    """One or more checks failed; ``failures`` maps a check name to its message."""

    def __init__(self, method: str, failures: dict[str, str]):
        self.failures = failures
        lines = [f"method '{method}' fails {len(failures)} conformance check(s):"]
        lines += [f"- {name}: {message}" for name, message in failures.items()]
        super().__init__("\n".join(lines))


class CheckFailed(AssertionError):
    """Raised inside a check: ``hook`` is the Method hook at fault, ``message`` what was expected."""

    def __init__(self, hook: str, message: str):
        super().__init__(f"{hook}: {message}")


@dataclass
class Subject:
    """A method under test and what it is built from (SynthTalk tiny, the preset's config)."""

    cls: type[Method]
    cfg: object  # RunConfig
    data: object  # PreparedDataset
    atol: float = ATOL
    rtol: float = RTOL
    _method: Method | None = field(default=None, repr=False)
    _trained: Method | None = field(default=None, repr=False)
    train_result: object = field(default=None, repr=False)  # the engine's TrainResult of trained()

    @property
    def spec(self):
        return self.data.spec

    @property
    def name(self) -> str:
        return self.cfg.method

    def build(self, seed: int | None = None) -> Method:
        """A fresh, prepared instance (weights initialised under ``seed``, the config's by default)."""
        from talkbench.pipeline import build_method

        cfg = self.cfg if seed is None else dataclasses.replace(self.cfg, seed=seed)
        method = build_method(cfg, self.spec)
        method.prepare(self.data.split("train"))
        return method

    @property
    def method(self) -> Method:
        """One shared prepared instance for the checks that do not change it."""
        if self._method is None:
            self._method = self.build()
        return self._method

    def trained(self) -> Method:
        """An instance trained through every stage by the engine on CPU (once, then shared)."""
        if self._trained is None:
            from talkbench.engine import train

            method = self.build()
            cfg = dataclasses.replace(self.cfg, device="cpu")
            with tempfile.TemporaryDirectory() as tmp:
                self.train_result = train(method, self.data, cfg, tmp, progress=False)
            self._trained = method.eval()
        return self._trained

    def stages(self) -> list[Stage]:
        return [s for s in self.method.stages() if s.epochs > 0]

    def conditions(self) -> list[int | None]:
        n = len(self.spec.train_subjects)
        return list(range(min(3, n))) if self.cls.uses_speaker_id else [None]

    def batch(self, stage: Stage, batch_size: int = 2) -> Batch:
        """The first batch the engine's loader gives for ``stage`` (triplets included)."""
        from talkbench.datasets import make_loader

        loader = make_loader(self.data.split("train"), sampler=stage.sampler, batch_size=batch_size, seed=0)
        return next(iter(loader))

    def clip(self, index: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(audio (S,), template (V, 3)) of a test clip, as the pipeline passes them to predict."""
        clip = self.data.split("test")[index]
        return torch.tensor(clip.audio), torch.tensor(clip.template)

    def close(self, a: torch.Tensor, b: torch.Tensor) -> bool:
        return a.shape == b.shape and torch.allclose(a.float(), b.float(), atol=self.atol, rtol=self.rtol)


# -- helpers --------------------------------------------------------------------------------------
def _predict_shape(subject: Subject, n_frames: int) -> tuple[int, ...]:
    spec = subject.spec
    if subject.method.target == BLENDSHAPES:
        return (n_frames, len(spec.channels))
    return (n_frames, spec.n_vertices, 3)


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Global RNG under ``seed`` for one call (dropout-free losses may still draw, e.g. diffusion steps)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _loss(method: Method, stage: Stage, batch: Batch, seed: int = 0) -> dict[str, torch.Tensor]:
    with _seeded(seed), torch.no_grad():
        out = method.loss(stage.name, batch)
    if not isinstance(out, dict) or "loss" not in out:
        raise CheckFailed("loss", f"expected a dict with a scalar 'loss', got {type(out).__name__}")
    return out


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> str:
    if a.shape != b.shape:
        return f"shapes {tuple(a.shape)} and {tuple(b.shape)}"
    return f"max |difference| {float((a.float() - b.float()).abs().max()):.3g}"


def _pad_more(batch: Batch, frames: int, sr_per_frame: int, generator: torch.Generator) -> Batch:
    """``batch`` padded by ``frames`` more frames, with noise (not zeros) in every padded position, so
    a loss that reads padding changes."""
    if batch is None:
        return None
    b, t = batch.mask.shape
    s = batch.audio.shape[1]
    t2, s2 = t + frames, s + frames * sr_per_frame
    audio = torch.randn(b, s2, generator=generator)
    audio_valid = torch.arange(s2)[None] < batch.audio_lengths[:, None]
    audio[:, :s][audio_valid[:, :s]] = batch.audio[audio_valid[:, :s]]
    mask = torch.arange(t2)[None] < batch.lengths[:, None]

    def pad_motion(x: torch.Tensor | None) -> torch.Tensor | None:
        if x is None:
            return None
        out = torch.randn(b, t2, *x.shape[2:], generator=generator)
        out[mask] = x[mask[:, :t]]
        return out

    return dataclasses.replace(
        batch,
        audio=audio,
        vertices=pad_motion(batch.vertices),
        weights=pad_motion(batch.weights),
        mask=mask,
        positive=_pad_more(batch.positive, frames, sr_per_frame, generator),
        negative=_pad_more(batch.negative, frames, sr_per_frame, generator),
    )


# -- the checks -----------------------------------------------------------------------------------
def check_frame_counts(subject: Subject) -> None:
    """predict: the frame count the dataset's rule gives for the audio, for lengths no fps divides."""
    method, spec = subject.method.eval(), subject.spec
    clip_audio, template = subject.clip()
    for frames, extra in zip(ODD_FRAMES, ODD_EXTRA_SAMPLES):
        n = int(round(frames * 16000 / spec.fps)) + extra
        audio = clip_audio[:n] if len(clip_audio) >= n else torch.randn(n) * 0.1
        want = _predict_shape(subject, spec.frames_for_samples(n))
        cond = subject.conditions()[0]
        got = method.predict(audio, template, cond)
        if tuple(got.shape) != want:
            raise CheckFailed(
                "predict",
                f"{n} samples at {spec.fps:g} fps give {want[0]} frames (spec.frames_for_samples); "
                f"expected shape {want}, got {tuple(got.shape)}",
            )
        if not torch.isfinite(got).all():
            raise CheckFailed("predict", f"non-finite values for {n} samples")
        many = method.predict_conditions(audio, template, subject.conditions())
        want_c = (len(subject.conditions()), *want)
        if tuple(many.shape) != want_c:
            raise CheckFailed("predict_conditions", f"expected shape {want_c}, got {tuple(many.shape)}")
        if subject.cls.samples:
            s = method.predict_samples(audio, template, cond, [0, 1])
            if tuple(s.shape) != (2, *want):
                raise CheckFailed("predict_samples", f"expected shape {(2, *want)}, got {tuple(s.shape)}")


def check_padding(subject: Subject) -> None:
    """loss: a batch padded further (noise in the padding) gives the losses of the batch as it came,
    for a batch of two clips and for one clip on its own; for every stage."""
    method, spec = subject.method.eval(), subject.spec
    sr_per_frame = int(round(16000 / spec.fps))
    gen = torch.Generator().manual_seed(0)
    for stage in subject.stages():  # learning-free methods train no stage: no loss to check
        for size in (2, 1):
            batch = subject.batch(stage, size)
            base = _loss(method, stage, batch)
            padded = _loss(method, stage, _pad_more(batch, EXTRA_PAD_FRAMES, sr_per_frame, gen))
            for key in base:
                if not subject.close(base[key].detach(), padded[key].detach()):
                    raise CheckFailed(
                        "loss",
                        f"stage '{stage.name}', {size} clip(s): '{key}' changed when the batch was padded "
                        f"by {EXTRA_PAD_FRAMES} more frames with noise ({float(base[key]):.6g} -> "
                        f"{float(padded[key]):.6g}); expected padding (mask False, beyond audio_lengths) "
                        "to be ignored",
                    )


def check_conditions(subject: Subject) -> None:
    """predict_conditions: the same as stacking predict over the conditions."""
    method = subject.method.eval()
    audio, template = subject.clip()
    conditions = subject.conditions()
    batched = method.predict_conditions(audio, template, conditions)
    looped = torch.stack([method.predict(audio, template, c) for c in conditions])
    if not subject.close(batched, looped):
        raise CheckFailed(
            "predict_conditions",
            f"conditions {conditions}: expected the loop over predict within atol {subject.atol:g}, "
            f"rtol {subject.rtol:g}; {_max_diff(batched, looped)}",
        )


def check_determinism(subject: Subject) -> None:
    """__init__, loss, predict: one seed gives the same weights, losses and predictions."""
    a, b = subject.build(), subject.build()
    sa, sb = a.state_dict(), b.state_dict()
    for key in sa:
        if not torch.equal(sa[key], sb[key]):
            raise CheckFailed("__init__", f"two builds under seed {subject.cfg.seed} differ in '{key}'")
    for stage in subject.stages():
        batch = subject.batch(stage)
        la, lb = _loss(a.eval(), stage, batch), _loss(b.eval(), stage, batch)
        for key in la:
            if not torch.equal(la[key], lb[key]):
                raise CheckFailed("loss", f"stage '{stage.name}': '{key}' differs under one seed")
    audio, template = subject.clip()
    cond = subject.conditions()[0]
    pa = a.eval().predict(audio, template, cond)
    with _seeded(12345):  # the global RNG state must not matter
        pb = b.eval().predict(audio, template, cond)
    if not torch.equal(pa, pb):
        raise CheckFailed("predict", f"two calls on the same weights differ ({_max_diff(pa, pb)})")


def check_samples(subject: Subject) -> None:
    """predict_samples (sampling methods): one seed repeats, other seeds differ, a sample depends on
    its own seed only (not on the others asked for with it)."""
    if not subject.cls.samples:
        return
    method = subject.trained()  # an untrained model may ignore its noise (a zero-initialised head)
    audio, template = subject.clip()
    cond = subject.conditions()[0]
    first = method.predict_samples(audio, template, cond, [3, 4])
    repeat = method.predict_samples(audio, template, cond, [3, 4])
    if not torch.equal(first, repeat):
        raise CheckFailed(
            "predict_samples",
            f"seeds [3, 4] gave different samples in two calls ({_max_diff(first, repeat)})",
        )
    # alone or beside another seed: the same sample up to the rounding of another batch shape
    alone = method.predict_samples(audio, template, cond, [3])
    if not subject.close(first[0], alone[0]):
        raise CheckFailed(
            "predict_samples",
            "seed 3 asked for alone and beside seed 4 gave different samples "
            f"({_max_diff(first[0], alone[0])}); expected a sample to depend on its own seed only "
            "(a generator per sample: sample_generator)",
        )
    if torch.allclose(first[0], first[1]):
        raise CheckFailed("predict_samples", "seeds 3 and 4 gave the same sample; expected them to differ")


def check_gradients(subject: Subject) -> None:
    """stages, begin_stage, loss: one optimiser step of each stage as the engine takes it moves the
    parameters the stage trains (each gets a finite gradient) and none it freezes."""
    from talkbench.engine.stages import build_optimizer, check_stages, freeze_for

    method = subject.build()
    check_stages(method.stages(), subject.name)
    for stage in subject.stages():
        method.zero_grad(set_to_none=True)  # the previous stage's gradients
        trainable = freeze_for(method, stage)
        method.begin_stage(stage)
        ids = {id(p) for p in trainable}
        frozen = {n: p.detach().clone() for n, p in method.named_parameters() if id(p) not in ids}
        opt = build_optimizer(stage, trainable)
        method.train()
        opt.zero_grad(set_to_none=True)
        with _seeded(0):
            out = method.loss(stage.name, subject.batch(stage))
        loss = out["loss"]
        if loss.ndim != 0 or not torch.isfinite(loss):
            raise CheckFailed("loss", f"stage '{stage.name}': expected a finite scalar 'loss', got {loss}")
        loss.backward()
        names = {id(p): n for n, p in method.named_parameters()}
        missing = [names[id(p)] for p in trainable if p.grad is None]
        if missing:
            raise CheckFailed(
                "stages",
                f"stage '{stage.name}' trains {len(missing)} parameter(s) its loss does not reach "
                f"(no gradient): {', '.join(missing[:5])}; expected trainable prefixes "
                f"{list(stage.trainable)} to name only parameters the loss uses",
            )
        bad = [names[id(p)] for p in trainable if not torch.isfinite(p.grad).all()]
        if bad:
            raise CheckFailed("loss", f"stage '{stage.name}': non-finite gradients in {', '.join(bad[:5])}")
        leaked = [n for n, p in method.named_parameters() if id(p) not in ids and p.grad is not None]
        opt.step()
        moved = [n for n, p in method.named_parameters() if n in frozen and not torch.equal(p, frozen[n])]
        if leaked or moved:
            raise CheckFailed(
                "begin_stage/loss",
                f"stage '{stage.name}' freezes {', '.join((leaked + moved)[:5])} (not in trainable "
                f"{list(stage.trainable)}) but "
                + ("it received a gradient" if leaked else "its value changed in one training step")
                + "; expected frozen parameters to stay untouched",
            )


def check_round_trip(subject: Subject) -> None:
    """state_dict / load_state_dict and the model bundle: a reloaded model predicts the same."""
    from talkbench.model_bundle import read_bundle, write_bundle

    method = subject.method.eval()
    audio, template = subject.clip()
    cond = subject.conditions()[0]
    want = method.predict(audio, template, cond)
    other = subject.build(seed=int(subject.cfg.seed) + 1)
    try:
        other.load_state_dict(copy.deepcopy(method.state_dict()))
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckFailed("state_dict", f"does not load into a fresh instance: {first}") from None
    got = other.eval().predict(audio, template, cond)
    if not subject.close(want, got):
        raise CheckFailed(
            "state_dict",
            f"a fresh instance with the loaded state predicts differently ({_max_diff(want, got)}); "
            "expected every state that predict uses in parameters or buffers",
        )
    with tempfile.TemporaryDirectory() as tmp:
        write_bundle(Path(tmp) / "model", subject.cfg, method, subject.spec, {})
        loaded = read_bundle(Path(tmp) / "model").method()
        got = loaded.predict(audio, template, cond)
    if not subject.close(want, got):
        raise CheckFailed("state_dict", f"the model bundle predicts differently ({_max_diff(want, got)})")


def check_training(subject: Subject) -> None:
    """every stage on SynthTalk tiny through the engine (CPU): finite losses, finite predictions."""
    method = subject.trained()
    metrics = subject.train_result.final_metrics
    bad = {k: v for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)}
    if bad:
        raise CheckFailed("loss", f"training logged non-finite values: {bad}")
    audio, template = subject.clip()
    out = method.predict(audio, template, subject.conditions()[0])
    if not torch.isfinite(out).all():
        raise CheckFailed("predict", "non-finite predictions after training")


CHECKS: dict[str, Callable[[Subject], None]] = {
    "frame_counts": check_frame_counts,
    "padding": check_padding,
    "conditions": check_conditions,
    "determinism": check_determinism,
    "samples": check_samples,
    "gradients": check_gradients,
    "round_trip": check_round_trip,
    "training": check_training,
}


# -- entry point ----------------------------------------------------------------------------------
@contextlib.contextmanager
def registered(cls: type[Method]) -> Iterator[str]:
    """``cls`` under its name in the method registry for the duration (already there: as it is)."""
    from talkbench.registry import METHODS

    name = cls.name
    if not name:
        raise CheckFailed("name", f"{cls.__qualname__} sets no name (a class attribute, e.g. name = 'gru')")
    if name in METHODS and METHODS.get(name) is cls:
        yield name
        return
    if name in METHODS:
        raise CheckFailed("name", f"'{name}' is registered already for another class")
    METHODS.register(name, cls)
    try:
        yield name
    finally:
        METHODS.unregister(name)


def load_subject(
    method: type[Method] | str, preset: str = "tiny", data=None, overrides: Sequence[str] = (), **tolerances
) -> Subject:
    """The method (a class or a registered name) with its preset's config (then ``overrides``, as
    ``--set``) on SynthTalk tiny, or on ``data``."""
    from talkbench.config import load_config
    from talkbench.registry import METHODS

    cls = METHODS.get(method) if isinstance(method, str) else method
    cfg = load_config(cls.name, preset=preset, overrides=overrides, seed=0, device="cpu")
    if data is None:
        data = cfg.dataset.load()
    return Subject(cls, cfg, data, **tolerances)


def check_method(
    method: type[Method] | str,
    preset: str = "tiny",
    checks: Sequence[str] | None = None,
    data=None,
    overrides: Sequence[str] = (),
    atol: float = ATOL,
    rtol: float = RTOL,
) -> list[str]:
    """Run the conformance checks (all of :data:`CHECKS` by default) on ``method`` built with
    ``preset`` and ``overrides`` (``KEY=VALUE`` as ``--set``) on SynthTalk tiny (``data``: a prepared
    dataset to use instead); returns the names of the checks that ran, raises
    :class:`ConformanceError` naming every failure."""
    from talkbench.registry import METHODS

    cls = METHODS.get(method) if isinstance(method, str) else method
    chosen = list(CHECKS) if checks is None else list(checks)
    unknown = [c for c in chosen if c not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check(s) {', '.join(unknown)}; available: {', '.join(CHECKS)}")
    failures: dict[str, str] = {}
    with registered(cls):
        subject = load_subject(cls, preset, data, overrides, atol=atol, rtol=rtol)
        for name in chosen:
            try:
                CHECKS[name](subject)
            except CheckFailed as exc:
                failures[name] = str(exc)
            except Exception as exc:  # a hook that raises: name the check and the error
                failures[name] = f"raised {type(exc).__name__}: {exc}"
    if failures:
        raise ConformanceError(cls.name, failures)
    return chosen
