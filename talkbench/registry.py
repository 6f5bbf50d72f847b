"""Registries of named components, with lazy imports, entry points and "did you mean" errors.

Rules: a name is registered once (a second registration is a :class:`ConfigError`; ``unregister``
first to replace one on purpose); a plugin (entry point) whose name a built-in already holds is not
used, with a :class:`RegistryWarning` naming both; a target is checked (``check``) when it is
registered, or, for lazy ``"module:attr"`` strings and entry points, when it is first resolved.
"""

from __future__ import annotations

import difflib
import importlib
import sys
import warnings
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Generic, TypeVar

from talkbench.errors import ConfigError

T = TypeVar("T")


class RegistryWarning(UserWarning):
    """A registration that was ignored (a plugin shadowed by a built-in of the same name)."""


def _is_entry_point(target: object) -> bool:
    # duck-typed: a finder from the importlib_metadata backport (installed by some packages) yields
    # its own EntryPoint class through the standard library's entry_points()
    return all(hasattr(target, a) for a in ("load", "group", "value"))


def _describe(target: object) -> str:
    if _is_entry_point(target):
        dist = getattr(target.dist, "name", None)
        return f"entry point '{target.value}'" + (f" (distribution {dist})" if dist else "")
    if isinstance(target, str):
        return f"'{target}'"
    return f"'{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', repr(target))}'"


class Registry(Generic[T]):
    """Maps names to objects or to lazy ``"module:attr"`` strings, plus an entry-point group.

    ``check(name, target)`` raises ConfigError for a target of the wrong kind.
    """

    def __init__(
        self,
        kind: str,
        entry_point_group: str | None = None,
        check: Callable[[str, object], None] | None = None,
    ):
        self.kind = kind
        self.group = entry_point_group
        self.check = check
        self._items: dict[str, object] = {}
        self._loaded_entry_points = False

    def register(self, name: str, target: object | None = None):
        """Register ``target`` (an object or a ``"module:attr"`` string); usable as a decorator."""
        if target is not None:
            self._add(name, target)
            return target

        def deco(obj):
            self._add(name, obj)
            return obj

        return deco

    def unregister(self, name: str) -> None:
        """Remove a name (no error when absent), e.g. a component registered by a test."""
        self._items.pop(name, None)

    def _add(self, name: str, target: object) -> None:
        if name in self._items:
            raise ConfigError(
                f"{self.kind} '{name}' is already registered ({_describe(self._items[name])}); "
                f"cannot register {_describe(target)} under the same name"
            )
        if not isinstance(target, str) and self.check is not None:
            self.check(name, target)
        self._items[name] = target

    def _load_entry_points(self) -> None:
        if self._loaded_entry_points or self.group is None:
            return
        self._loaded_entry_points = True
        for ep in entry_points(group=self.group):
            if ep.name in self._items:
                warnings.warn(
                    f"{self.kind} plugin '{ep.name}' from {_describe(ep)} is shadowed by "
                    f"{_describe(self._items[ep.name])}, registered under the same name; "
                    "the plugin is not used",
                    RegistryWarning,
                    stacklevel=3,
                )
                continue
            self._items[ep.name] = ep

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __contains__(self, name: str) -> bool:
        self._load_entry_points()
        return name in self._items

    def static_attr(self, name: str, attr: str) -> object | None:
        """A class attribute of a registered target without importing it (``None`` when unknown).

        A loaded target answers directly; a lazy ``"module:attr"`` or an entry point is read from its
        source: a literal assignment in the class body, following one ``from x import Cls``. Listings
        use it so that they need neither torch nor the methods.
        """
        self._load_entry_points()
        target = self._items.get(name)
        if target is None:
            return None
        if _is_entry_point(target):
            target = target.value
        if not isinstance(target, str):
            return getattr(target, attr, None)
        module, _, cls_name = target.partition(":")
        return _literal_class_attr(module, cls_name, attr)

    def get(self, name: str) -> T:
        self._load_entry_points()
        if name not in self._items:
            close = difflib.get_close_matches(name, self._items, n=3, cutoff=0.5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ConfigError(
                f"unknown {self.kind} '{name}'.{hint} Available: {', '.join(sorted(self._items))}"
            )
        target = self._items[name]
        lazy = isinstance(target, str) or _is_entry_point(target)
        if lazy:
            target = self._resolve(name, target)
            if self.check is not None:
                self.check(name, target)  # refused: the lazy entry stays, so the error repeats
            self._items[name] = target
        return target  # type: ignore[return-value]

    def _resolve(self, name: str, target: object) -> object:
        """Import a lazy target; a failing import is one ConfigError naming the plugin and the error
        (the entry stays lazy, so other names load as before and this one fails the same way again)."""
        try:
            if isinstance(target, str):
                module, _, attr = target.partition(":")
                return getattr(importlib.import_module(module), attr)
            return target.load()  # type: ignore[attr-defined]
        except Exception as exc:
            raise ConfigError(
                f"{self.kind} '{name}': {_describe(target)} failed to import: {type(exc).__name__}: {exc}"
            ) from exc

    def package_root(self, name: str) -> Path | None:
        """The folder of the top-level package that holds ``name``'s target, found without importing it
        (``None`` when unknown): where a plugin ships its data, e.g. its presets."""
        self._load_entry_points()
        target = self._items.get(name)
        if target is None:
            return None
        if _is_entry_point(target):
            target = target.value
        module = target.partition(":")[0] if isinstance(target, str) else getattr(target, "__module__", "")
        try:
            path, is_package = _source_of(module.split(".")[0])
        except (ModuleNotFoundError, ValueError):
            return None
        return path.parent if is_package else None


def _source_of(module: str) -> tuple[Path, bool]:
    """The source file of a module and whether it is a package, importing only its top-level package
    (find_spec of a submodule would import every package above it, e.g. a method's torch model)."""
    import importlib.util

    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(module)
    path, is_package = Path(spec.origin), spec.submodule_search_locations is not None
    for part in rest:
        folder = path.parent / part
        path, is_package = (
            (folder / "__init__.py", True) if folder.is_dir() else (path.parent / f"{part}.py", False)
        )
    if not path.is_file():
        raise ModuleNotFoundError(module)
    return path, is_package


def _literal_class_attr(module: str, cls_name: str, attr: str, hops: int = 4) -> object | None:
    """A literal class attribute read from source, following ``from x import Cls`` and the class's
    bases (first base first: the MRO of single inheritance), at most ``hops`` steps."""
    import ast
    import importlib.util

    try:
        path, is_package = _source_of(module)
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except Exception:  # not findable or not Python source: unknown, never an error in a listing
        return None
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == cls_name:
            for item in node.body:
                targets = item.targets if isinstance(item, ast.Assign) else [getattr(item, "target", None)]
                if any(isinstance(t, ast.Name) and t.id == attr for t in targets) and item.value is not None:
                    try:
                        return ast.literal_eval(item.value)
                    except ValueError:
                        return None
            for base in node.bases if hops > 0 else ():  # inherited, e.g. Method's uses_speaker_id
                if isinstance(base, ast.Name):
                    found = _literal_class_attr(module, base.id, attr, hops - 1)
                    if found is not None:
                        return found
            return None
        if isinstance(node, ast.ImportFrom) and hops > 0:
            for alias in node.names:
                if (alias.asname or alias.name) == cls_name:
                    pkg = module if is_package else module.rpartition(".")[0]
                    source = importlib.util.resolve_name("." * node.level + (node.module or ""), pkg)
                    return _literal_class_attr(source, alias.name, attr, hops - 1)
    return None


# the hooks every method implements (the base class raises NotImplementedError); the others have defaults
REQUIRED_HOOKS = ("stages", "loss", "predict")


def _check_method(name: str, target: object) -> None:
    # A Method subclass has imported talkbench.methods.base already; looking it up in sys.modules
    # keeps this module free of imports of methods (the datasets registry builds on it).
    base = getattr(sys.modules.get("talkbench.methods.base"), "Method", None)
    if base is None or not (isinstance(target, type) and issubclass(target, base)):
        raise ConfigError(
            f"method '{name}': {_describe(target)} is not a subclass of talkbench.methods.base.Method"
        )
    missing = [h for h in REQUIRED_HOOKS if getattr(target, h) is getattr(base, h)]
    if missing:
        raise ConfigError(
            f"method '{name}': {_describe(target)} does not implement {', '.join(missing)} "
            "(every method defines stages(), loss(stage, batch) and predict(audio, template, condition); "
            "see docs/adding-a-method.md)"
        )


METHODS: Registry = Registry("method", entry_point_group="talkbench.methods", check=_check_method)
METHODS.register("template", "talkbench.methods.reference:TemplateMethod")
METHODS.register("mean-motion", "talkbench.methods.reference:MeanMotionMethod")
METHODS.register("faceformer", "talkbench.methods.faceformer:FaceFormer")
METHODS.register("codetalker", "talkbench.methods.codetalker:CodeTalker")
METHODS.register("codetalker-nd", "talkbench.methods.codetalker.nd:CodeTalkerND")
METHODS.register("memorytalker", "talkbench.methods.memorytalker:MemoryTalker")
METHODS.register("selftalk", "talkbench.methods.selftalk:SelfTalk")
METHODS.register("unitalker", "talkbench.methods.unitalker:UniTalker")
METHODS.register("facediffuser", "talkbench.methods.facediffuser:FaceDiffuser")
