"""Registries of named components, with lazy imports, entry points and "did you mean" errors."""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from talkbench.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects or to lazy ``"module:attr"`` strings, plus an entry-point group."""

    def __init__(self, kind: str, entry_point_group: str | None = None):
        self.kind = kind
        self.group = entry_point_group
        self._items: dict[str, object] = {}
        self._loaded_entry_points = False

    def register(self, name: str, target: object | None = None):
        """Register ``target`` (an object or a ``"module:attr"`` string); usable as a decorator."""
        if target is not None:
            self._items[name] = target
            return target

        def deco(obj):
            self._items[name] = obj
            return obj

        return deco

    def _load_entry_points(self) -> None:
        if self._loaded_entry_points or self.group is None:
            return
        self._loaded_entry_points = True
        for ep in entry_points(group=self.group):
            self._items.setdefault(ep.name, ep)

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self._load_entry_points()
        return name in self._items

    def get(self, name: str) -> T:
        self._load_entry_points()
        if name not in self._items:
            close = difflib.get_close_matches(name, self._items, n=3, cutoff=0.5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ConfigError(
                f"unknown {self.kind} '{name}'.{hint} Available: {', '.join(sorted(self._items))}"
            )
        target = self._items[name]
        if isinstance(target, str):
            module, _, attr = target.partition(":")
            target = getattr(importlib.import_module(module), attr)
            self._items[name] = target
        elif hasattr(target, "load") and hasattr(target, "group"):  # an EntryPoint
            target = target.load()
            self._items[name] = target
        return target  # type: ignore[return-value]


METHODS: Registry = Registry("method", entry_point_group="talkbench.methods")
METHODS.register("template", "talkbench.methods.reference:TemplateMethod")
METHODS.register("mean-motion", "talkbench.methods.reference:MeanMotionMethod")
METHODS.register("faceformer", "talkbench.methods.faceformer:FaceFormer")
METHODS.register("codetalker", "talkbench.methods.codetalker:CodeTalker")
METHODS.register("memorytalker", "talkbench.methods.memorytalker:MemoryTalker")
