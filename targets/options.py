"""Target options as frozen, typed dataclasses: defaults, a one-line doc per option, one parser.

A target declares its options as a subclass of :class:`TargetOptions`::

    @dataclass(frozen=True)
    class XlaOptions(TargetOptions):
        target: ClassVar[str] = "xla"
        batch: int = option(64, "static batch of the executable", check=at_least(1))
        dtype: str = option("f32", "weights and matmul operands", choices=("f32", "bf16"))

and sets ``Options = XlaOptions`` on its :class:`~xrec.targets.Target`; the base
``Target.parse_options`` then returns ``XlaOptions.parse(values)``. Every
target has ``strict`` (refuse the lowering fallbacks it lists, see
xrec.lowering). ``xrec targets --options T`` prints the table.

``parse`` takes a dict of values or strings (``-O batch=64`` gives an int,
``{"batch": "64"}`` a string): each is coerced to the field's annotated type
(bool, int, float, str, ``X | None``, ``dict[str, int]`` and unions of
these), then checked against its ``choices`` and ``check``. An unknown or
invalid option is a ValueError that lists every valid option with its type,
default and choices.

Adopting incrementally: a parsed options object is also a read-only mapping
(``opts["batch"]``, ``opts.get("dtype")``, ``dict(opts)``), so code written
for the old option dicts keeps working. It is not JSON: a target writes
``opts.as_dict()`` into the manifest (``writer.target_info["options"]``).
At load time options come back from the manifest as a dict; ``parse`` it again.
"""
from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

_MISSING = dataclasses.MISSING
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def option(default: Any = _MISSING, doc: str = "", *, choices: tuple | None = None,
           check: Callable[[Any], str | None] | None = None, before: Callable[[Any], Any] | None = None,
           default_factory: Callable[[], Any] | None = None):
    """A dataclass field with its one-line ``doc``, optional ``choices``, a ``check`` returning an error
    text (or None), and ``before``, a normalisation applied to a given value before type coercion."""
    if not doc:
        raise ValueError("every target option needs a one-line doc")
    meta = {"doc": doc, "choices": tuple(choices) if choices else None, "check": check, "before": before}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def at_least(lo):
    """A ``check`` for numbers ``>= lo``."""
    return lambda v: None if v is None or v >= lo else f"must be >= {lo}"


def positive_finite(v):
    """A ``check`` for finite numbers > 0."""
    return None if v is None or (v > 0 and math.isfinite(v)) else "must be a finite number > 0"


@dataclass(frozen=True)
class OptionDoc:
    name: str
    type: str
    default: Any
    doc: str
    choices: tuple | None


def type_name(tp) -> str:
    """``int``, ``str | None``, ``dict[str, int]``: how an option's type reads in messages."""
    if tp is type(None):
        return "None"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        return f"{origin.__name__}[{', '.join(type_name(a) for a in typing.get_args(tp))}]"
    return getattr(tp, "__name__", str(tp))


class _Invalid(ValueError):
    pass


def _coerce(value, tp):
    """``value`` as type ``tp`` (see the module docstring), or _Invalid."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        arms = typing.get_args(tp)
        if type(None) in arms and (value is None or (isinstance(value, str) and value.lower() in ("none", "null"))):
            return None
        for arm in arms:
            if arm is type(None):
                continue
            try:
                return _coerce(value, arm)
            except _Invalid:
                pass
        raise _Invalid(f"is not {type_name(tp)}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        raise _Invalid("is not a bool (true/false)")
    if tp is int:
        if isinstance(value, bool):
            raise _Invalid("is not an int")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise _Invalid("is not an int")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise _Invalid("is not a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Invalid("is not a string")
    if origin is dict:
        ktp, vtp = typing.get_args(tp)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise _Invalid(f"is not a JSON object {type_name(tp)}") from None
        if not isinstance(value, Mapping):
            raise _Invalid(f"is not {type_name(tp)}")
        return {_coerce(k, ktp): _coerce(v, vtp) for k, v in value.items()}
    raise TypeError(f"target options of type {type_name(tp)} are not supported")


@dataclass(frozen=True)
class TargetOptions(Mapping):
    """Options every target takes; subclass it for a target's own (see the module docstring)."""

    target: ClassVar[str] = ""

    strict: bool = option(False, "refuse the lowering fallbacks the target lists (xrec.lowering): fail instead "
                                 "of taking a slower generic path")

    # ---- construction
    @classmethod
    def parse(cls, values: Mapping[str, Any] | None = None):
        """Options from a dict of values or strings; unknown or invalid ones are a ValueError listing the valid."""
        if isinstance(values, cls):
            return values
        values = dict(values or {})
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ValueError(f"{cls._who()}: unknown option(s) {', '.join(map(repr, unknown))}; "
                             f"valid options:\n{cls.help_text()}")
        hints = typing.get_type_hints(cls)
        out = {}
        for f in dataclasses.fields(cls):
            if f.name not in values:
                continue
            out[f.name] = cls._parse_one(f, hints[f.name], values[f.name])
        opts = cls(**out)
        problem = opts.check()
        if problem:
            raise ValueError(f"{cls._who()}: {problem}")
        return opts

    @classmethod
    def _parse_one(cls, f: dataclasses.Field, tp, raw):
        meta = f.metadata
        value = raw
        if meta.get("before"):
            value = meta["before"](value)
        try:
            value = _coerce(value, tp)
        except _Invalid as e:
            raise ValueError(f"{cls._who()}: option {f.name}={raw!r} {e}; {cls._line(f, tp).strip()}") from None
        if meta.get("choices") and value not in meta["choices"]:
            raise ValueError(f"{cls._who()}: option {f.name}={raw!r}; choose one of "
                             f"{', '.join(map(str, meta['choices']))}")
        if meta.get("check"):
            problem = meta["check"](value)
            if problem:
                raise ValueError(f"{cls._who()}: option {f.name}={raw!r} {problem}; {cls._line(f, tp).strip()}")
        return value

    def check(self) -> str | None:
        """Checks across options (override): an error text, or None."""
        return None

    # ---- reading
    def as_dict(self) -> dict:
        """Plain values, for the manifest (JSON)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def replace(self, **changes):
        return type(self).parse({**self.as_dict(), **changes})

    def __getitem__(self, key: str):
        if key not in self._names():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self):
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    @classmethod
    def _names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    # ---- documentation
    @classmethod
    def _who(cls) -> str:
        return f"target {cls.target!r}" if cls.target else "target options"

    @classmethod
    def describe(cls) -> list[OptionDoc]:
        hints = typing.get_type_hints(cls)
        out = []
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not _MISSING else (
                f.default_factory() if f.default_factory is not _MISSING else None)
            out.append(OptionDoc(f.name, type_name(hints[f.name]), default, f.metadata.get("doc", ""),
                                 f.metadata.get("choices")))
        return out

    @classmethod
    def _line(cls, f: dataclasses.Field, tp) -> str:
        d = next(o for o in cls.describe() if o.name == f.name)
        return cls._format(d)

    @staticmethod
    def _format(d: OptionDoc) -> str:
        choices = f" (one of {', '.join(map(str, d.choices))})" if d.choices else ""
        return f"  {d.name}: {d.type} = {d.default!r}{choices}  {d.doc}"

    @classmethod
    def help_text(cls) -> str:
        """One line per option: name, type, default, choices, doc."""
        return "\n".join(cls._format(d) for d in cls.describe())


def option_arg(text: str) -> tuple[str, object]:
    """One command-line target option, ``-O KEY=VALUE`` (xrec compile, check, bench): VALUE is read
    as JSON when it parses (numbers, true/false, lists), else kept as a string; the target's
    options dataclass then coerces and checks it."""
    import argparse
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value
