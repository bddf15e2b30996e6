"""Typed hyperparameters, overridable from one command-line string.

:class:`HParams` is the successor of tensor2tensor's (``tf.contrib.training``) ``HParams``: an
ordered set of named values whose types are fixed when they are added, so that a typo or a
wrongly typed override from ``--hparams="a=1,b=2"`` fails at once with a one-line message instead
of silently training the wrong model. It is pure Python (no TensorFlow), so it imports fast.

Supported value types: ``bool``, ``int``, ``float``, ``str``, lists and tuples of those scalars,
and ``None``. An ``int`` given for a ``float`` hparam is promoted; everything else must match.
``None`` may be set on any hparam; an hparam *created* as ``None`` takes the type of the first
non-``None`` value given to it.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import numbers
from collections.abc import Mapping
from typing import Any

from imagined_rl.errors import UserError

__all__ = ["HParams", "HParamsError"]

_SCALARS: tuple[type, ...] = (bool, int, float, str)
_QUOTES = "'\""
_OPEN, _CLOSE = "[(", "])"
_TUPLE_TAG = "__tuple__"  # JSON marker: {"__tuple__": [...]} decodes to a tuple
_MAX_LISTED = 8  # how many valid names an error lists when nothing is close


class HParamsError(UserError, ValueError):
    """A bad hparam name, value or override string; the message is one line."""


@dataclasses.dataclass(frozen=True)
class _Spec:
    """The fixed type of one hparam.

    ``container`` is ``list``, ``tuple`` or ``None`` (a scalar); ``scalar`` is the scalar type, or
    of the elements, or ``None`` where it is not known yet (an hparam created as ``None``, or an
    empty list).
    """

    container: type | None
    scalar: type | None

    @property
    def untyped(self) -> bool:
        return self.container is None and self.scalar is None

    def describe(self) -> str:
        scalar = self.scalar.__name__ if self.scalar else "any scalar"
        if self.container is None:
            return scalar if self.scalar else "any type"
        if self.scalar is None:
            return self.container.__name__
        return f"{self.container.__name__} of {scalar}"


_UNTYPED = _Spec(None, None)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _scalar_type(value: Any) -> type | None:
    """The hparam scalar type of ``value``, or ``None`` if it is not a supported scalar."""
    if isinstance(value, bool):
        return bool
    if _is_int(value):
        return int
    if _is_real(value):
        return float
    if isinstance(value, str):
        return str
    return None


def _element_type(items: list | tuple) -> type | bool | None:
    """The common scalar type of ``items`` (ints and floats mix to float); ``None`` if empty.

    Returns ``False`` when the items are not all supported scalars of one kind.
    """
    kinds = {_scalar_type(item) for item in items}
    if not kinds:
        return None
    if kinds == {int, float}:
        return float
    if len(kinds) == 1 and None not in kinds:
        return kinds.pop()
    return False


def _cast_scalar(value: Any, scalar: type) -> Any:
    """``value`` as ``scalar``, or raises ``TypeError`` (caught and reworded by the caller)."""
    if scalar is bool and isinstance(value, bool):
        return value
    if scalar is int and _is_int(value):
        return int(value)
    if scalar is float and _is_real(value):
        return float(value)
    if scalar is str and isinstance(value, str):
        return value
    raise TypeError


def _describe_value(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _suggest(name: str, valid: list[str]) -> str:
    """``did you mean: x?`` for close matches of ``name``, else a few valid names."""
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.6)
    if close:
        return f"did you mean: {', '.join(close)}?"
    if not valid:
        return "there are no hparams in this set"
    shown = ", ".join(valid[:_MAX_LISTED])
    more = f", ... ({len(valid)} in total)" if len(valid) > _MAX_LISTED else ""
    return f"valid names include: {shown}{more}"


def _split_top_level(text: str, source: str) -> list[str]:
    """Splits ``text`` at commas outside brackets and quotes.

    A quote only opens a quoted string at the start of a value or list element, so apostrophes
    inside plain words (``name=o'brien``) are left alone.
    """
    parts: list[str] = []
    depth, quote, start, last = 0, "", 0, ""
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
            continue
        if ch in _QUOTES and last in ("", "=", ",", *_OPEN):
            quote = ch
        elif ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
            if depth < 0:
                entry = text[start:].split(",", 1)[0].strip()
                raise HParamsError(
                    f"malformed {source} entry {entry!r} (unbalanced brackets)"
                )
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        if not ch.isspace():
            last = ch
    if depth or quote:
        what = "quotes" if quote else "brackets"
        raise HParamsError(f"malformed {source} entry {text[start:].strip()!r} (unbalanced {what})")
    parts.append(text[start:])
    return parts


def _unquote(text: str) -> tuple[str, bool]:
    """``text`` without one pair of surrounding quotes, and whether it had them."""
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] == text[0]:
        return text[1:-1], True
    return text, False


def _bracketed(text: str) -> str | None:
    """The inside of ``[...]`` or ``(...)``, or ``None`` if ``text`` is not bracketed."""
    if len(text) >= 2 and text[0] in _OPEN and text[-1] == _CLOSE[_OPEN.index(text[0])]:
        return text[1:-1]
    return None


def _parse_scalar(text: str, scalar: type | None) -> Any:
    """Converts one stripped token to ``scalar`` (inferring it when ``None``); ``ValueError``."""
    unquoted, quoted = _unquote(text)
    if scalar is None:
        if quoted:
            return unquoted
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        for candidate in (int, float):
            try:
                return _parse_scalar(text, candidate)
            except ValueError:
                pass
        return text
    if scalar is str:
        return unquoted
    if quoted:
        raise ValueError(text)
    if scalar is bool:
        lowered = text.lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise ValueError(text)
    if scalar is int:
        try:
            return int(text)
        except ValueError:
            as_float = float(text)  # accepts 1e6 and 12.0, which are integers
            if not as_float.is_integer():
                raise
            return int(as_float)
    if scalar is float:
        return float(text)
    raise ValueError(text)


class HParams:
    """An ordered set of named, typed hyperparameters.

    >>> hp = HParams(learning_rate=1e-3, policy_layers=(64, 64), optimizer="adam")
    >>> hp.parse("learning_rate=3e-4,policy_layers=[128,128]").policy_layers
    (128, 128)

    Attribute assignment (``hp.learning_rate = 0.1``) type-checks like :meth:`set_hparam`; new
    hparams must be added with :meth:`add_hparam`, so a misspelt assignment fails loudly.
    """

    def __init__(self, /, **kwargs: Any) -> None:
        object.__setattr__(self, "_values", {})
        object.__setattr__(self, "_specs", {})
        for name, value in kwargs.items():
            self.add_hparam(name, value)

    # -- adding, setting, reading -------------------------------------------------------------

    def add_hparam(self, name: str, value: Any) -> None:
        """Adds a new hparam whose type is taken from ``value``; error if it already exists."""
        if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
            raise HParamsError(
                f"invalid hparam name {name!r} (use a Python identifier not starting with '_')"
            )
        if hasattr(type(self), name):
            raise HParamsError(f"hparam name {name!r} clashes with the HParams method of that name")
        if name in self._values:
            raise HParamsError(f"hparam {name!r} already exists; use set_hparam to change it")
        spec, value = self._infer(name, value)
        self._values[name] = value
        self._specs[name] = spec

    def set_hparam(self, name: str, value: Any) -> None:
        """Sets an existing hparam, checking ``value`` against its type."""
        self._check_known(name)
        spec, value = self._convert(name, value)
        self._values[name] = value
        self._specs[name] = spec

    def del_hparam(self, name: str) -> None:
        """Removes an hparam."""
        self._check_known(name)
        del self._values[name]
        del self._specs[name]

    def override_from_dict(self, values: Mapping[str, Any]) -> HParams:
        """Sets several existing hparams; all are checked before any is set. Returns ``self``."""
        converted = []
        for name, value in values.items():
            self._check_known(name)
            converted.append((name, *self._convert(name, value)))
        for name, spec, value in converted:
            self._values[name] = value
            self._specs[name] = spec
        return self

    def values(self) -> dict[str, Any]:
        """A new ``{name: value}`` dict, in the order the hparams were added."""
        return {name: _copy_value(value) for name, value in self._values.items()}

    def get(self, name: str, default: Any = None) -> Any:
        """The value of ``name``, or ``default`` if there is no such hparam."""
        return self._values.get(name, default)

    def copy(self) -> HParams:
        """An independent copy (lists are copied too)."""
        new = HParams()
        new._values.update(self.values())
        new._specs.update(self._specs)
        return new

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails, so methods and _values/_specs never come here.
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(
                f"HParams has no hparam {name!r}; {_suggest(name, list(self._values))}"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        elif name not in self._values:
            raise HParamsError(
                f"unknown hparam {name!r}; use add_hparam({name!r}, value) to add a new one"
                f" ({_suggest(name, list(self._values))})"
            )
        else:
            self.set_hparam(name, value)

    def __delattr__(self, name: str) -> None:
        self.del_hparam(name)

    def __dir__(self) -> list[str]:
        return [*super().__dir__(), *self._values]

    # -- parsing ------------------------------------------------------------------------------

    def parse(self, overrides: str, *, source: str = "--hparams") -> HParams:
        """Applies ``"a=1,b=2.5,c=true,name=adam,layers=[64,64]"`` to existing hparams.

        Each value is converted to the type of the hparam it overrides: bools accept
        ``true/false/True/False/1/0``; lists and tuples must be in brackets (commas inside the
        brackets are fine); strings may be quoted; ``None`` sets ``None``. Whitespace is
        tolerated and an empty string changes nothing. All entries are checked before any is
        applied. ``source`` names the flag in error messages. Returns ``self``.
        """
        if overrides is None or not overrides.strip():
            return self
        parsed: dict[str, tuple[_Spec, Any]] = {}
        for entry in _split_top_level(overrides, source):
            entry = entry.strip()
            if not entry:
                continue  # tolerate "a=1," and "a=1,,b=2"
            name, equals, text = entry.partition("=")
            name, text = name.strip(), text.strip()
            if not equals or not name:
                raise HParamsError(f"malformed {source} entry {entry!r} (expected name=value)")
            if name in parsed:
                raise HParamsError(f"hparam {name!r} is set twice in {source}")
            if name not in self._values:
                raise HParamsError(
                    f"unknown hparam {name!r} in {source}; {_suggest(name, list(self._values))}"
                )
            parsed[name] = self._parse_text(name, text)
        for name, (spec, value) in parsed.items():
            self._values[name] = value
            self._specs[name] = spec
        return self

    def _parse_text(self, name: str, text: str) -> tuple[_Spec, Any]:
        """Converts the text of one override to the type of hparam ``name``."""
        spec = self._specs[name]
        if text == "None":
            return spec, None
        inner = _bracketed(text)
        if spec.container is None and not spec.untyped:
            if inner is not None:
                raise HParamsError(
                    f"hparam {name!r} expects {spec.describe()}, got a list {text!r}"
                )
            try:
                return spec, _parse_scalar(text, spec.scalar)
            except ValueError:
                raise HParamsError(self._expects(name, spec, repr(text), parsing=True)) from None
        if inner is None:
            if spec.untyped:  # a scalar for an hparam created as None
                return self._infer(name, _parse_scalar(text, None))
            raise HParamsError(
                f"hparam {name!r} expects {spec.describe()} in brackets, e.g."
                f" {name}=[{text or '...'}], got {text!r}"
            )
        items = [item.strip() for item in _split_top_level(inner, "--hparams list")]
        if items == [""]:
            items = []
        if any(not item for item in items):
            raise HParamsError(f"hparam {name!r} has an empty list element in {text!r}")
        container = spec.container or list
        try:
            values = [_parse_scalar(item, spec.scalar) for item in items]
        except ValueError:
            raise HParamsError(self._expects(name, spec, repr(text), parsing=True)) from None
        return self._convert(name, container(values))

    # -- type checking ------------------------------------------------------------------------

    def _check_known(self, name: str) -> None:
        if name not in self._values:
            raise HParamsError(f"unknown hparam {name!r}; {_suggest(name, list(self._values))}")

    @staticmethod
    def _expects(name: str, spec: _Spec, got: str, parsing: bool = False) -> str:
        is_bool = spec.scalar is bool and spec.container is None
        hint = " (true/false/1/0)" if parsing and is_bool else ""
        return f"hparam {name!r} expects {spec.describe()}{hint}, got {got}"

    def _infer(self, name: str, value: Any) -> tuple[_Spec, Any]:
        """The spec and normalised value of a new (or untyped) hparam."""
        if value is None:
            return _UNTYPED, None
        scalar = _scalar_type(value)
        if scalar is not None:
            return _Spec(None, scalar), _cast_scalar(value, scalar)
        if isinstance(value, (list, tuple)):
            element = _element_type(value)
            if element is not False:
                container = type(value) if type(value) in (list, tuple) else list
                items = [_cast_scalar(item, element) for item in value] if element else []
                return _Spec(container, element), container(items)
        raise HParamsError(
            f"hparam {name!r} has unsupported value {_describe_value(value)}; use a bool, int,"
            " float, str, None, or a list/tuple of one scalar type"
        )

    def _convert(self, name: str, value: Any) -> tuple[_Spec, Any]:
        """``value`` checked against (and converted to) the type of hparam ``name``."""
        spec = self._specs[name]
        if value is None:
            return spec, None
        if spec.untyped:
            return self._infer(name, value)
        if spec.container is None:
            try:
                return spec, _cast_scalar(value, spec.scalar)
            except TypeError:
                raise HParamsError(self._expects(name, spec, _describe_value(value))) from None
        if not isinstance(value, (list, tuple)):
            raise HParamsError(self._expects(name, spec, _describe_value(value)))
        scalar = spec.scalar
        if scalar is None:  # an empty list so far: the new elements fix the element type
            scalar = _element_type(value)
            if scalar is False:
                raise HParamsError(self._expects(name, spec, _describe_value(value)))
            spec = _Spec(spec.container, scalar)
        try:
            items = [_cast_scalar(item, scalar) for item in value] if scalar else []
        except TypeError:
            raise HParamsError(self._expects(name, spec, _describe_value(value))) from None
        return spec, spec.container(items)

    # -- serialisation and comparison ---------------------------------------------------------

    def to_json(self, indent: int | None = None, sort_keys: bool = False) -> str:
        """JSON of the values; tuples are written as ``{"__tuple__": [...]}`` to survive."""
        encoded = {
            name: {_TUPLE_TAG: list(value)} if isinstance(value, tuple) else value
            for name, value in self._values.items()
        }
        return json.dumps(encoded, indent=indent, sort_keys=sort_keys)

    @classmethod
    def from_json(cls, text: str) -> HParams:
        """The inverse of :meth:`to_json` (a plain JSON object of values also works)."""
        try:
            decoded = json.loads(text)
        except (TypeError, ValueError) as e:
            raise HParamsError(f"invalid hparams JSON: {e}") from None
        if not isinstance(decoded, dict):
            raise HParamsError(
                f"invalid hparams JSON: expected an object, got {type(decoded).__name__}"
            )
        hparams = cls()
        for name, value in decoded.items():
            if isinstance(value, dict) and set(value) == {_TUPLE_TAG}:
                value = tuple(value[_TUPLE_TAG])
            hparams.add_hparam(name, value)
        return hparams

    def __repr__(self) -> str:
        body = ", ".join(f"{name}={value!r}" for name, value in self._values.items())
        return f"HParams({body})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HParams):
            return NotImplemented
        return self._values == other._values

    __hash__ = None  # type: ignore[assignment]  # mutable


def _copy_value(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value
