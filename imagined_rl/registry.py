"""Named hparams sets, problems, environments and world models, looked up by name.

This is tensor2tensor's ``registry`` for imagined_rl: a function decorated with
:func:`register_hparams` becomes selectable with ``--hparams_set=NAME`` (and tweakable with
``--hparams="a=1,b=2"``), a problem class decorated with :func:`register_problem` with its name,
and so on. Registration happens when the defining module is imported; the registry imports the
packages that hold the built-in definitions (``imagined_rl.hparams``, ``imagined_rl.problems``,
and for envs ``imagined_rl.envs.classic`` and ``imagined_rl.envs.minatar``) lazily, on the first
lookup or listing, so importing this module stays cheap and free of TensorFlow.

Unknown names raise :class:`~imagined_rl.errors.UnknownNameError` with a one-line message that
suggests close matches. Mistakes in the definitions themselves (a bad or duplicate name) are
programming errors and raise ``ValueError`` at import time.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

from imagined_rl.errors import UnknownNameError
from imagined_rl.hparams_lib import HParams

__all__ = [
    "env",
    "help_string",
    "hparams",
    "hparams_with_overrides",
    "list_envs",
    "list_hparams",
    "list_models",
    "list_problems",
    "model",
    "problem",
    "register_env",
    "register_hparams",
    "register_model",
    "register_problem",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

_SNAKE_CASE = re.compile(r"^[a-z][a-z0-9_]*$")
_GYM_ID = re.compile(r"^[A-Za-z0-9_/\-]+-v\d+$")
_MAX_LISTED = 8  # how many known names an error lists when nothing is close

# Importing these registers the built-in entries. The env module imports TensorFlow, so it is
# imported only for env lookups, and may not exist (yet) in a given checkout.
_BUILTIN_PACKAGES = ("imagined_rl.hparams", "imagined_rl.problems")
_ENV_MODULES = ("imagined_rl.envs.classic", "imagined_rl.envs.minatar")
_MODEL_PACKAGE = "imagined_rl.world_models"  # imports TensorFlow too: only for model lookups


def _populate(kind: str) -> None:
    """Imports the modules that register the built-in entries, before a lookup of ``kind``.

    Python caches imports, so this is cheap after the first call. An error inside one of those
    modules propagates; only the absence of the env module itself is ignored.
    """
    for package in _BUILTIN_PACKAGES:
        importlib.import_module(package)
    modules = {"env": _ENV_MODULES, "model": (_MODEL_PACKAGE,)}.get(kind, ())
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise


def _summary(obj: Any) -> str:
    """The first line of ``obj``'s own docstring (not one inherited from a base class)."""
    doc = getattr(obj, "__doc__", None)
    if not isinstance(doc, str) or not doc.strip():
        return ""
    return inspect.cleandoc(doc).splitlines()[0].strip()


def _default_name(obj: Any) -> str:
    """The name an object registers under: a function's name, a class's name in snake_case."""
    name = getattr(obj, "__name__", None)
    if not isinstance(name, str):
        raise TypeError(f"cannot infer a registry name for {obj!r}; pass a name explicitly")
    if inspect.isclass(obj):
        name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()
    return name


def _qualified_name(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or "?"
    return f"{module}.{getattr(obj, '__qualname__', repr(obj))}"


class _Registry(Generic[T]):
    """A name -> object table for one kind of thing (hparams set, problem, env, model).

    Args:
      kind: the singular label used in messages, e.g. ``"hparams set"``.
      plural: the plural label, e.g. ``"hparams sets"``.
      populate_key: the key passed to :func:`_populate` before every lookup or listing.
      pattern: names must match this regular expression.
      pattern_help: what a valid name looks like, for the error message.
    """

    def __init__(
        self,
        kind: str,
        plural: str,
        populate_key: str,
        pattern: re.Pattern[str],
        pattern_help: str,
    ) -> None:
        self.kind = kind
        self.plural = plural
        self.populate_key = populate_key
        self.pattern = pattern
        self.pattern_help = pattern_help
        self._entries: dict[str, T] = {}

    def register(self, name: str, obj: T) -> T:
        """Adds ``obj`` under ``name``; ``ValueError`` for an invalid or taken name.

        Registering an object with the same module and qualified name as the current entry
        replaces it, so re-running a notebook cell or reloading a module is not a duplicate.
        """
        if not isinstance(name, str) or not self.pattern.match(name):
            raise ValueError(
                f"invalid {self.kind} name {name!r}: {self.pattern_help}"
                f" (must match {self.pattern.pattern})"
            )
        if not callable(obj):
            raise TypeError(f"cannot register {obj!r} as {self.kind} {name!r}: it is not callable")
        existing = self._entries.get(name)
        if existing is not None and _qualified_name(existing) != _qualified_name(obj):
            raise ValueError(
                f"{self.kind} {name!r} is already registered (by {_qualified_name(existing)});"
                f" pick another name for {_qualified_name(obj)}"
            )
        self._entries[name] = obj
        return obj

    def unregister(self, name: str) -> None:
        """Removes ``name``; ``KeyError`` if absent. Meant for tests."""
        del self._entries[name]

    def snapshot(self) -> dict[str, T]:
        """A copy of the table, for :meth:`restore` (tests use this to undo registrations)."""
        return dict(self._entries)

    def restore(self, snapshot: dict[str, T]) -> None:
        """Replaces the table with an earlier :meth:`snapshot`."""
        self._entries = dict(snapshot)

    def get(self, name: str) -> T:
        """The object registered as ``name``; :class:`UnknownNameError` if there is none."""
        _populate(self.populate_key)
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise self._unknown(name) from None

    def names(self) -> list[str]:
        """All registered names, sorted."""
        _populate(self.populate_key)
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        _populate(self.populate_key)
        return name in self._entries

    def _unknown(self, name: str) -> UnknownNameError:
        known = sorted(self._entries)
        # Match case-insensitively (so 'cartpole-v1' finds 'CartPole-v1'); report real names.
        by_lower: dict[str, str] = {}
        for known_name in known:
            by_lower.setdefault(known_name.lower(), known_name)
        close = [
            by_lower[match]
            for match in difflib.get_close_matches(str(name).lower(), by_lower, n=3, cutoff=0.6)
        ]
        if close:
            hint = f"did you mean: {', '.join(close)}?"
        elif known:
            more = f", ... ({len(known)} in total)" if len(known) > _MAX_LISTED else ""
            hint = f"known {self.plural}: {', '.join(known[:_MAX_LISTED])}{more}"
        else:
            hint = f"no {self.plural} are registered"
        return UnknownNameError(
            f"unknown {self.kind} {name!r}; {hint} (see --registry_help)",
            kind=self.kind,
            name=str(name),
            suggestions=close,
        )

    def help_lines(self) -> list[str]:
        """``--registry_help`` lines for this registry: a heading, then one line per name."""
        names = self.names()
        lines = [f"{self.plural} ({len(names)}):"]
        if not names:
            lines.append("  (none registered)")
        width = max((len(name) for name in names), default=0)
        for name in names:
            summary = _summary(self._entries[name])
            lines.append(f"  {name:<{width}}  {summary}".rstrip())
        return lines


_HPARAMS: _Registry[Callable[[], HParams]] = _Registry(
    "hparams set", "hparams sets", "hparams", _SNAKE_CASE, "use snake_case, e.g. 'ppo_atari_base'"
)
_PROBLEMS: _Registry[Callable[[], Any]] = _Registry(
    "problem", "problems", "problem", _SNAKE_CASE, "use snake_case, e.g. 'gym_pong_random'"
)
_ENVS: _Registry[Callable[..., Any]] = _Registry(
    "env", "envs", "env", _GYM_ID, "use a gymnasium-style id such as 'CartPole-v1'"
)
_MODELS: _Registry[Callable[[], Any]] = _Registry(
    "model", "models", "model", _SNAKE_CASE, "use snake_case, e.g. 'basic_stochastic'"
)
_ALL_REGISTRIES: tuple[_Registry[Any], ...] = (_HPARAMS, _PROBLEMS, _ENVS, _MODELS)


def _decorator(registry: _Registry[Any], name_or_obj: Any) -> Any:
    """Implements ``@register_x``, ``@register_x()`` and ``@register_x("name")``."""
    if name_or_obj is None or isinstance(name_or_obj, str):
        explicit = name_or_obj

        def decorate(obj: Any) -> Any:
            registry.register(explicit if explicit is not None else _default_name(obj), obj)
            return obj

        return decorate
    if callable(name_or_obj):
        registry.register(_default_name(name_or_obj), name_or_obj)
        return name_or_obj
    raise TypeError(
        f"register a {registry.kind} with @decorator or @decorator('name'), not {name_or_obj!r}"
    )


# -- hparams sets -----------------------------------------------------------------------------


@overload
def register_hparams(name_or_fn: F) -> F: ...
@overload
def register_hparams(name_or_fn: str | None = None) -> Callable[[F], F]: ...
def register_hparams(name_or_fn: Any = None) -> Any:
    """Registers a no-argument function returning :class:`HParams` as a named hparams set.

    Use bare (``@register_hparams``: the name is the function's name) or with a snake_case name
    (``@register_hparams("ppo_original_params")``). The function is returned unchanged, so sets
    can build on each other by calling one another.
    """
    return _decorator(_HPARAMS, name_or_fn)


def hparams(name: str) -> HParams:
    """A fresh :class:`HParams` from the hparams set ``name`` (its function is called anew)."""
    fn = _HPARAMS.get(name)
    result = fn()
    if not isinstance(result, HParams):
        raise TypeError(
            f"hparams set {name!r} ({_qualified_name(fn)}) returned {type(result).__name__},"
            " not HParams"
        )
    return result


def hparams_with_overrides(name: str, overrides: str) -> HParams:
    """The hparams set ``name`` with ``--hparams``-style ``overrides`` (``"a=1,b=2"``) applied."""
    return hparams(name).parse(overrides)


def list_hparams() -> list[str]:
    """The names of all hparams sets, sorted."""
    return _HPARAMS.names()


# -- problems ---------------------------------------------------------------------------------


@overload
def register_problem(name_or_cls: F) -> F: ...
@overload
def register_problem(name_or_cls: str | None = None) -> Callable[[F], F]: ...
def register_problem(name_or_cls: Any = None) -> Any:
    """Registers a problem class (or no-argument factory) under a snake_case name.

    Bare use names it after the class in snake_case (``GymPongRandom`` -> ``gym_pong_random``)
    or after the function.
    """
    return _decorator(_PROBLEMS, name_or_cls)


def problem(name: str) -> Any:
    """A new instance of the problem ``name`` (the registered class called with no arguments)."""
    return _PROBLEMS.get(name)()


def list_problems() -> list[str]:
    """The names of all problems, sorted."""
    return _PROBLEMS.names()


# -- environments -----------------------------------------------------------------------------


def register_env(name: str) -> Callable[[F], F]:
    """Registers a native environment class under a gymnasium id such as ``"CartPole-v1"``."""
    if not isinstance(name, str):
        raise TypeError(f"register_env needs a gymnasium id such as 'CartPole-v1', not {name!r}")
    return _decorator(_ENVS, name)


def env(name: str) -> Any:
    """The environment class registered as ``name`` (case-sensitive, e.g. ``"CartPole-v1"``)."""
    return _ENVS.get(name)


def list_envs() -> list[str]:
    """The ids of all native environments, sorted."""
    return _ENVS.names()


# -- world models -----------------------------------------------------------------------------


@overload
def register_model(name_or_cls: F) -> F: ...
@overload
def register_model(name_or_cls: str | None = None) -> Callable[[F], F]: ...
def register_model(name_or_cls: Any = None) -> Any:
    """Registers a world-model class under a snake_case name (``--model=NAME``)."""
    return _decorator(_MODELS, name_or_cls)


def model(name: str) -> Any:
    """The world-model class registered as ``name`` (build it with ``cls(spec, hparams)``)."""
    return _MODELS.get(name)


def list_models() -> list[str]:
    """The names of all world models, sorted."""
    return _MODELS.names()


# -- help -------------------------------------------------------------------------------------


def help_string() -> str:
    """A multi-line listing of every registered name with its one-line summary."""
    lines: list[str] = []
    for registry in _ALL_REGISTRIES:
        if lines:
            lines.append("")
        lines.extend(registry.help_lines())
    return "\n".join(lines)
