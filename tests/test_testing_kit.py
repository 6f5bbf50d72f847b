"""The conformance kit (talkbench.testing): every built-in method passes it, the scaffold's method
passes it, and it catches a method with a deliberate fault of each kind, naming the hook."""

from __future__ import annotations

import importlib
import sys

import pytest
import torch

from talkbench.registry import METHODS
from talkbench.scaffold import write_plugin
from talkbench.testing import CHECKS, ConformanceError

BUILT_IN = (
    "template", "mean-motion", "faceformer", "codetalker", "codetalker-nd", "memorytalker", "selftalk",
    "facediffuser", "unitalker",
)  # fmt: skip


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_built_in_method_passes_the_kit(conformance, name):
    assert conformance(name) == list(CHECKS)


def test_the_list_covers_every_registered_built_in():
    assert set(BUILT_IN) == {n for n in METHODS.names() if METHODS.package_root(n).name == "talkbench"}


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """The method ``bench new-method kit-good`` writes, imported from its folder (not installed)."""
    root = tmp_path_factory.mktemp("plugin")
    write_plugin("kit-good", root)
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module("talkbench_kit_good").KitGood
    finally:
        sys.path.remove(str(root))
        for mod in [m for m in sys.modules if m.startswith("talkbench_kit_good")]:
            del sys.modules[mod]


def test_the_scaffold_method_passes_with_its_own_tiny_preset(conformance, good):
    assert conformance(good, preset="tiny") == list(CHECKS)


def _faulty(good, name: str, **body) -> type:
    return type(name.title().replace("-", ""), (good,), {"name": name, **body})


def _failures(conformance, cls, checks) -> dict[str, str]:
    """The failures of a faulty subclass, on the scaffold's tiny settings (it has no preset folder)."""
    tiny = {"hidden": 16, "epochs": 1, "head_epochs": 1}
    overrides = ["dataset.preset=tiny", *(f"{cls.name}.{k}={v}" for k, v in tiny.items())]
    with pytest.raises(ConformanceError) as caught:
        conformance(cls, preset="defaults", checks=checks, overrides=overrides)
    assert f"method '{cls.name}' fails" in str(caught.value)
    return caught.value.failures


def test_a_wrong_frame_count_is_caught_naming_predict(conformance, good):
    def predict_conditions(self, audio, template, conditions):
        out = good.predict_conditions(self, audio, template, conditions)
        return torch.cat([out, out[:, -1:]], 1)  # one frame too many

    cls = _faulty(good, "kit-frames", predict_conditions=predict_conditions)
    failures = _failures(conformance, cls, ["frame_counts", "round_trip"])
    assert list(failures) == ["frame_counts"]  # the other check still passes
    text = failures["frame_counts"]
    assert text.startswith("predict: ") and "frames_for_samples" in text


def test_a_padding_leak_is_caught_naming_loss(conformance, good):
    def loss(self, stage, batch):
        pred = self.animate(batch)
        return {"loss": ((pred - batch.vertices) ** 2).mean()}  # padded frames counted

    failures = _failures(conformance, _faulty(good, "kit-padding", loss=loss), ["padding"])
    assert failures["padding"].startswith("loss: stage 'train'") and "padded" in failures["padding"]


def test_a_frozen_parameter_that_gets_a_gradient_is_caught(conformance, good):
    def begin_stage(self, stage):
        for p in self.parameters():
            p.requires_grad_(True)  # undoes the engine's freezing

    failures = _failures(conformance, _faulty(good, "kit-unfrozen", begin_stage=begin_stage), ["gradients"])
    text = failures["gradients"]
    assert text.startswith("begin_stage/loss: stage 'head' freezes encoder.")
    assert "received a gradient" in text


def test_a_frozen_parameter_changed_in_place_is_caught(conformance, good):
    def loss(self, stage, batch):
        if stage == "head":
            with torch.no_grad():
                self.style.weight.mul_(0.9)  # e.g. a hand-rolled EMA of a frozen part
        return good.loss(self, stage, batch)

    failures = _failures(conformance, _faulty(good, "kit-moving", loss=loss), ["gradients"])
    assert "stage 'head' freezes style.weight" in failures["gradients"]
    assert "its value changed" in failures["gradients"]


def test_a_trainable_parameter_the_loss_never_reaches_is_caught(conformance, good):
    def __init__(self, config, spec):
        good.__init__(self, config, spec)
        self.unused = torch.nn.Linear(2, 2)

    failures = _failures(conformance, _faulty(good, "kit-unused", __init__=__init__), ["gradients"])
    text = failures["gradients"]
    assert text.startswith("stages: stage 'train'") and "unused.weight" in text


def test_nondeterminism_is_caught_naming_predict(conformance, good):
    def predict(self, audio, template, condition=None):
        out = good.predict(self, audio, template, condition)
        return out + 1e-3 * torch.randn_like(out)  # the global RNG: differs from call to call

    failures = _failures(conformance, _faulty(good, "kit-random", predict=predict), ["determinism"])
    assert failures["determinism"].startswith("predict: two calls on the same weights differ")


def test_a_condition_batch_that_differs_from_the_loop_is_caught(conformance, good):
    def predict(self, audio, template, condition=None):
        return good.predict_conditions(self, audio, template, [condition])[0]

    def predict_conditions(self, audio, template, conditions):
        return good.predict_conditions(self, audio, template, list(reversed(conditions)))  # misordered

    cls = _faulty(good, "kit-conditions", predict=predict, predict_conditions=predict_conditions)
    failures = _failures(conformance, cls, ["conditions"])
    assert failures["conditions"].startswith("predict_conditions: conditions [0, 1, 2]")


def test_a_sampling_method_that_ignores_its_seeds_is_caught(conformance, good):
    cls = _faulty(good, "kit-samples", samples=True)  # the base predict_samples repeats one prediction
    failures = _failures(conformance, cls, ["samples"])
    want = "predict_samples: seeds 3 and 4 gave the same sample; expected them to differ"
    assert failures["samples"] == want


def test_a_hook_that_raises_is_reported_with_the_check(conformance, good):
    def predict(self, audio, template, condition=None):
        raise ValueError("not ready")

    failures = _failures(conformance, _faulty(good, "kit-raises", predict=predict), ["determinism"])
    assert failures == {"determinism": "raised ValueError: not ready"}
