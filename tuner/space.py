"""The search-space language: parse YAML, validate it, suggest parameters, enumerate grids.

A search space is a small YAML document (a file in ``search_spaces/`` or an inline mapping in
a study spec)::

    version: 1                                  # optional
    include: [optimizers.yaml]                  # merged first; this file's params override
    params:
      n_layers: {int: [1, 3]}
      width: {int: [32, 512], log: true, per: n_layers}     # one value per layer
      lr: {float: [1.0e-5, 1.0e-1], log: true}
      momentum: {float: [0.5, 0.99], when: {optimizer: sgd}}
      epochs: 10                                # fixed value
      lr2:                                      # variants: one range per condition
        - {float: [1.0e-3, 0.3], log: true, when: {optimizer: sgd}}
        - {float: [1.0e-4, 1.0e-2], log: true, when: {optimizer: [adam, adamw]}}

Everything is checked when the space is built, so that a typo never surfaces as a traceback
deep inside a run: every problem is a :class:`~tuner.exceptions.SpaceError` whose one-line
message reads ``file: key.path: problem; fix``.

Optuna names (what samplers, the storage and the grid see):

* a plain param is named as written: ``lr``;
* a ``per`` param gets one Optuna param per index: ``width.0``, ``width.1``, ...;
* a variant gets its condition appended: ``lr|optimizer=sgd``, ``lr|optimizer=adam/adamw``
  (condition keys sorted and joined by ``,``; values sorted and joined by ``/``), and a
  per-variant ``name|cond.0``, ``name|cond.1``, ...;
* fixed values are not Optuna params at all; they only appear in the user-facing dict.

The user-facing dict (what :meth:`SearchSpace.suggest` returns and a task receives) uses the
plain names, holds fixed values, lists for ``per`` params and omits inactive params.

This module imports only the standard library and PyYAML at import time; Optuna is imported
inside the functions that need it, so that ``import tuner`` stays light.
"""

from __future__ import annotations

import copy
import difflib
import heapq
import itertools
import json
import math
import numbers
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from tuner._yaml import load_yaml_file
from tuner.exceptions import SpaceError

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.trial import BaseTrial

__all__ = ["MAX_GRID_POINTS", "MAX_PER", "SEARCH_SPACES_DIR", "SPACE_VERSION", "SearchSpace"]

#: The only version of the language so far; ``version:`` may be omitted.
SPACE_VERSION = 1
#: ``grid()`` refuses spaces with more points than this (a grid is materialised in memory).
MAX_GRID_POINTS = 1_000_000
#: Largest count a ``per`` param may repeat to (each index is its own Optuna param).
MAX_PER = 1024
#: The shipped spaces; the last place an ``include`` is looked up. ``tuner/search_spaces`` is a
#: link to the checkout's ``search_spaces/`` that a wheel holds as a copy: an installed tuner had
#: none, and ``include: [optimizers.yaml]`` failed outside a checkout.
SEARCH_SPACES_DIR = Path(__file__).resolve().parent / "search_spaces"

# Optuna keeps every param value as a float internally: larger ints would lose precision.
_MAX_INT = 2**53
# A float ``step`` giving more values than this is a mistake (and breaks exact decimal math).
_MAX_STEPS = 10**12
# Bounds the work of a diamond-shaped include graph; real spaces include a handful of files.
_MAX_FILES = 256
# Nesting depth of fixed values (lists/mappings); deeper is not a hyperparameter.
_MAX_DEPTH = 32

_KINDS = ("float", "int", "choice", "value")
_ALL_KEYS = ("float", "int", "choice", "value", "log", "step", "when", "per")
_ALLOWED = {
    "float": ("float", "log", "step", "when", "per"),
    "int": ("int", "log", "step", "when", "per"),
    "choice": ("choice", "when", "per"),
    "value": ("value", "when", "per"),
}
_TOP_KEYS = ("version", "include", "params")
# No '.', '|', '=', '/' or ',': those build Optuna names (width.0, lr|optimizer=adam/adamw).
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,99}$")
_DEFINE_IT = "define it in params or include the file that does"


class _Missing:
    """Sentinel for 'no value' where ``None`` is a legitimate value."""

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


# --------------------------------------------------------------------------- value helpers


def _is_int(x: Any) -> bool:
    """An integer that is not a bool (YAML's ``true`` must never count as 1)."""
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _finite(x: Any) -> bool:
    """``math.isfinite`` that answers False (instead of raising) for ints beyond float range."""
    try:
        return math.isfinite(x)
    except OverflowError:
        return False


def _is_scalar(x: Any) -> bool:
    return x is None or isinstance(x, (bool, str)) or _is_int(x) or (_is_num(x) and _finite(x))


def _eq(a: Any, b: Any) -> bool:
    """Type-aware equality of scalars: ``true`` is not ``1``, but ``1`` equals ``1.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    return _is_num(a) and _is_num(b) and a == b


def _deep_eq(a: Any, b: Any) -> bool:
    """:func:`_eq` extended to the lists and mappings a fixed value may hold."""
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return (
            isinstance(a, (list, tuple))
            and isinstance(b, (list, tuple))
            and len(a) == len(b)
            and all(_deep_eq(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        return (
            isinstance(a, Mapping)
            and isinstance(b, Mapping)
            and a.keys() == b.keys()
            and all(_deep_eq(a[k], b[k]) for k in a)
        )
    return _eq(a, b)


def _sort_key(x: Any) -> tuple[int, Any]:
    """Orders mixed scalars deterministically (null < bools < numbers < strings)."""
    if x is None:
        return (0, 0)
    if isinstance(x, bool):
        return (1, x)
    if isinstance(x, str):
        return (3, x)
    return (2, x)


def _as_drawn(d: _Dim, value: Any) -> Any:
    """``value`` (accepted by ``d``) as the sampler would have drawn it: the choice itself (``64``
    for ``64.0`` given against ``choice: [32, 64]``), a float for a float range, an int for an int
    one. An enqueued value reaches the objective unchanged, and ``nn.Linear(8, 64.0)`` fails."""
    if d.kind == "choice":
        return next(c for c in d.choices if _eq(value, c))
    if d.kind == "float":
        return float(value)
    if d.kind == "int":
        return int(value)
    return value


def stored_params_reader(stored_space: Any) -> "Callable[[Mapping[str, Any]], dict[str, Any] | None]":
    """A function turning a trial's Optuna-named params into the params its objective saw
    (fixed values included, per-layer lists rebuilt), from a study's stored space (``tuner:space``);
    it answers None where that cannot be done (no stored space, one from another version, a trial
    recorded under another space). The space is parsed once, here: ``tuner best``, ``tuner
    trial``, the report and the dashboard's pages call the reader once per trial."""
    parsed: SearchSpace | None = None
    if isinstance(stored_space, dict):
        try:
            parsed = SearchSpace.from_mapping(stored_space, source="<stored>")
        except Exception:  # noqa: BLE001 - a stored space from another version must not break a reader
            parsed = None

    def read(optuna_params: Mapping[str, Any]) -> dict[str, Any] | None:
        if parsed is None:
            return None
        try:
            return parsed.params_from_optuna(dict(optuna_params))
        except Exception:  # noqa: BLE001 - as above, for a trial the stored space cannot read
            return None

    return read


def reads_as_another_type(text: str) -> bool:
    """Whether the string ``text`` would print like a number, a boolean or None (``"1"``, ``"null"``,
    ``"inf"``): where messages and listings show it, it is quoted so as not to be taken for one."""
    if text.strip().lower() in ("none", "nan", "inf", "-inf", "+inf"):
        return True
    if isinstance(_yaml_scalar(text), (int, float, bool, type(None))):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def _say(x: Any) -> str:
    """A scalar as :func:`_render` shows it, quoted where a string would read as another type
    (``'1'``, ``'null'``), for messages only (Optuna names keep :func:`_render`'s form): the
    choices ``[1, "1"]`` read "one of 1, 1" and a ``when: {b: 1}`` seemed allowed."""
    if isinstance(x, str) and reads_as_another_type(x):
        return repr(x)
    return _render(x)


def _yaml_scalar(text: str) -> Any:
    """What a bare YAML scalar ``text`` reads as."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _render(x: Any) -> str:
    """A scalar as YAML would show it; used in Optuna names and messages."""
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, str):
        return x
    if isinstance(x, float):
        return repr(x)
    return str(x)


def _plain(x: Any) -> str:
    """A bound or step as a user writes it: ``1`` for ``1.0``, ``0.3``, ``1e-05``."""
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return _render(x)


def _show(x: Any, limit: int = 60) -> str:
    text = repr(x)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(x: Any) -> str:
    if x is None:
        return "null"
    if isinstance(x, bool):
        return f"a boolean ({_render(x)})"
    if isinstance(x, str):
        return f"a string ({_show(x)})"
    if _is_num(x):
        return f"a number ({_show(x)})"
    if isinstance(x, Mapping):
        return "a mapping"
    if isinstance(x, (list, tuple)):
        return "a list"
    return f"a {type(x).__name__}"


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"did you mean {match[0]!r}? " if match else ""


def _display(path: Path) -> str:
    """A path as users want to read it: relative to the working directory when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # name too long, NUL byte, ...
        return False


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class _Dim:
    """One concrete spec: a float/int range, a choice list or a fixed value (one variant)."""

    kind: str
    path: str  # key path for messages, e.g. "params.lr[1]"
    low: Any = None
    high: Any = None
    log: bool = False
    step: Any = None  # int params always have a step (default 1); floats may have None
    choices: tuple[Any, ...] = ()
    value: Any = None
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    per: str | None = None
    # The high the user wrote when it is off the step grid (``high`` is then the last grid value):
    # kept only to say so in :meth:`SearchSpace.notes`, never part of the space's identity.
    given_high: Any = field(default=None, compare=False)

    @property
    def continuous(self) -> bool:
        """A float range without a step: a sampled value equals a given number with probability 0."""
        return self.kind == "float" and self.step is None and self.low != self.high

    @property
    def cond(self) -> str:
        """The ``when`` rendered for Optuna names: ``optimizer=adam/adamw,schedule=step``."""
        return ",".join(f"{k}={'/'.join(_render(v) for v in vs)}" for k, vs in self.when)

    def holds(self, values: Mapping[str, Any]) -> bool:
        """Whether every ``when`` condition holds for the values chosen so far."""
        for key, options in self.when:
            if key not in values:
                return False
            got = values[key]
            if not any(_eq(got, o) for o in options):
                return False
        return True

    def accepts(self, v: Any) -> bool:
        """Whether ``v`` is one value this spec can produce (one element for ``per``)."""
        if self.kind == "value":
            return _deep_eq(v, self.value)
        if self.kind == "choice":
            return any(_eq(v, c) for c in self.choices)
        if self.kind == "int":
            return _is_int(v) and self.low <= v <= self.high and (v - self.low) % self.step == 0
        if not _is_num(v) or not _finite(v):
            return False
        # Optuna's samplers round through log/exp and may land an ulp outside the bounds
        # (TPE gives 4.999999999999999 for [5.0, 5.000000000000001], log): allow that much.
        slack = 1e-9 * max(abs(self.low), abs(self.high))
        if not self.low - slack <= v <= self.high + slack:
            return False
        if self.step is None:
            return True
        k = (v - self.low) / self.step
        return abs(k - round(k)) < 1e-8  # Optuna's own tolerance (FloatDistribution._contains)

    def domain_text(self) -> str:
        """What values this spec can take, for messages."""
        if self.kind == "value":
            return f"only {_say(self.value) if _is_scalar(self.value) else _show(self.value)}"
        if self.kind == "choice":
            return "one of " + ", ".join(_say(c) for c in self.choices)
        extra = " (log)" if self.log else ""
        if self.step is not None and not (self.kind == "int" and self.step == 1):
            extra += f" in steps of {_render(self.step)}"
        noun = "an integer" if self.kind == "int" else "a number"
        return f"{noun} in [{_render(self.low)}, {_render(self.high)}]{extra}"

    def high_note(self) -> str | None:
        """Why the highest value tried is below the high written, when it is (else None).

        The adjustment is Optuna's own (it would warn and do the same on every suggest); the
        note makes it visible in ``validate`` and the run header, where it is otherwise silent.
        """
        if self.given_high is None:
            return None
        second = Decimal(str(self.low)) + Decimal(str(self.step))
        second_value = int(second) if self.kind == "int" else float(second)
        return (f"{self.path}: high {_plain(self.given_high)} is not on the step grid "
                f"({_plain(self.low)}, {_plain(second_value)}, ...), so the highest value tried is {_plain(self.high)}")

    def grid_size(self) -> int | None:
        """Number of grid values, or None when the spec is not finite for a grid."""
        if self.kind == "value":
            return 1
        if self.kind == "choice":
            return len(self.choices)
        if self.kind == "int":
            return None if self.log and self.low != self.high else (self.high - self.low) // self.step + 1
        if self.step is None:
            return None if self.low != self.high else 1
        return int((Decimal(str(self.high)) - Decimal(str(self.low))) // Decimal(str(self.step))) + 1

    def grid_values(self) -> list[Any]:
        """The grid values in order; call only after :meth:`grid_size` was checked."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            return list(range(self.low, self.high + 1, self.step))
        if self.step is None:
            return [self.low]
        low, step = Decimal(str(self.low)), Decimal(str(self.step))
        # Decimal arithmetic gives 0.1, 0.2, 0.3 rather than 0.30000000000000004.
        return [float(low + k * step) for k in range(self.grid_size() or 0)]

    def sample(self, trial: BaseTrial, name: str) -> Any:
        if self.kind == "value":
            return copy.deepcopy(self.value)
        if self.kind == "choice":
            return trial.suggest_categorical(name, self.choices)
        if self.kind == "int":
            return trial.suggest_int(name, self.low, self.high, step=self.step, log=self.log)
        return self.on_grid(trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step))

    def on_grid(self, value: Any) -> Any:
        """A stepped float's value as the grid point it stands for: Optuna draws ``low + k * step``
        in binary floating point (0.30000000000000004 for the third of step 0.1), which a
        ``when: {b: 0.3}`` never equals and an objective prints as noise. Grid search and
        ``enqueue`` give 0.3 (:meth:`grid_values`); so does this. Other values pass through."""
        if self.kind != "float" or self.step is None or isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            return value
        low, step = Decimal(str(self.low)), Decimal(str(self.step))
        k = ((Decimal(repr(float(value))) - low) / step).to_integral_value()
        return float(low + k * step)

    def distribution(self) -> BaseDistribution:
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "choice":
            return CategoricalDistribution(self.choices)
        if self.kind == "int":
            return IntDistribution(self.low, self.high, log=self.log, step=self.step)
        if self.kind == "float":
            return FloatDistribution(self.low, self.high, log=self.log, step=self.step)
        raise ValueError("fixed values have no Optuna distribution")  # internal misuse

    def canonical(self) -> dict[str, Any]:
        """The normalised mapping form, which also parses back to an equal spec."""
        out: dict[str, Any]
        if self.kind in ("float", "int"):
            out = {self.kind: [self.low, self.high]}
            if self.log:
                out["log"] = True
            if self.step is not None and not (self.kind == "int" and self.step == 1):
                out["step"] = self.step
        elif self.kind == "choice":
            out = {"choice": list(self.choices)}
        else:
            out = {"value": copy.deepcopy(self.value)}
        if self.when:
            out["when"] = {k: list(vs) for k, vs in self.when}
        if self.per:
            out["per"] = self.per
        return out


@dataclass(frozen=True)
class _Param:
    """A named param: one spec, or several variants each with its own ``when``."""

    name: str
    dims: tuple[_Dim, ...]
    variants: bool
    source: str  # the file (or inline source) that defined it, for messages

    @property
    def path(self) -> str:
        return f"params.{self.name}"

    def deps(self) -> list[str]:
        """Params this one reads (``when`` keys and ``per``), in first-mention order."""
        out: list[str] = []
        for d in self.dims:
            for key in [k for k, _ in d.when] + ([d.per] if d.per else []):
                if key not in out:
                    out.append(key)
        return out

    def optuna_name(self, dim: _Dim) -> str:
        return f"{self.name}|{dim.cond}" if self.variants else self.name

    @property
    def is_per(self) -> bool:
        return any(d.per for d in self.dims)


# --------------------------------------------------------------------------- parsing


def _fail(source: str, path: str, problem: str, fix: str | None = None) -> SpaceError:
    return SpaceError(source, path, problem, fix)


def _check_fixed(x: Any, source: str, path: str, depth: int = 0) -> Any:
    """Validate a fixed value (JSON-like data) and return a plain copy of it."""
    if depth >= _MAX_DEPTH and isinstance(x, (list, tuple, Mapping)):  # the 33rd list, empty or not
        raise _fail(source, path, f"fixed value nested deeper than {_MAX_DEPTH} levels", "flatten it")
    if x is None or isinstance(x, (bool, str)) or _is_int(x):
        return int(x) if _is_int(x) else x
    if _is_num(x):
        if not math.isfinite(x):
            raise _fail(source, path, f"{_render(float(x))} is not a usable value", "use a finite number")
        return float(x)
    if isinstance(x, (list, tuple)):
        return [_check_fixed(v, source, f"{path}[{i}]", depth + 1) for i, v in enumerate(x)]
    if isinstance(x, Mapping):
        out = {}
        for k, v in x.items():
            if not isinstance(k, str):
                raise _fail(source, path, f"key {_show(k)} is not a string", "quote the key")
            out[k] = _check_fixed(v, source, f"{path}.{k}", depth + 1)
        return out
    raise _fail(
        source, path, f"unsupported value type {type(x).__name__}",
        "fixed values are null, booleans, numbers, strings, lists or mappings (quote dates)",
    )


def _check_scalar(x: Any, source: str, path: str, what: str) -> Any:
    if _is_int(x):
        return int(x)
    if _is_num(x) and math.isfinite(x):
        return float(x)
    if x is None or isinstance(x, (bool, str)):
        return x
    if _is_num(x):
        raise _fail(source, path, f"{what} {_render(float(x))} is not a usable value", "use a finite number")
    raise _fail(source, path, f"{what} must be null, a boolean, a number or a string, got {_kind(x)}",
                "write a single value (quote text)")


def _parse_number(x: Any, kind: str, source: str, path: str, what: str) -> Any:
    """One bound or step: an int for int params, a finite float for float params."""
    if kind == "int":
        if not _is_int(x):
            hint = "write a whole number such as 3" if _is_num(x) else "int bounds are whole numbers"
            raise _fail(source, path, f"{what} must be an integer, got {_kind(x)}", hint)
        if abs(x) > _MAX_INT:
            raise _fail(source, path, f"{what} {x} is too large", f"keep int values within ±2**53 ({_MAX_INT})")
        return int(x)
    if not _is_num(x):
        if isinstance(x, str):
            try:
                float(x)
                hint = f"YAML reads {x} as text; write numbers with a dot and a signed exponent, e.g. 1.0e-5, 2.0e+3"
            except ValueError:
                hint = "write a number"
        else:
            hint = "write a number"
        raise _fail(source, path, f"{what} must be a number, got {_kind(x)}", hint)
    try:
        value = float(x)
    except (OverflowError, ValueError):
        raise _fail(source, path, f"{what} {_show(x)} is too large", "use a finite float") from None
    if not math.isfinite(value):
        raise _fail(source, path, f"{what} is {_render(value)}", "use a finite number")
    return value


def _parse_when(raw: Any, source: str, path: str) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if not isinstance(raw, Mapping) or not raw:
        raise _fail(
            source, path, f"expected a non-empty mapping of param: value(s), got {_kind(raw)}",
            "e.g. when: {optimizer: sgd} or when: {optimizer: [adam, adamw]}",
        )
    items = []
    for key, want in raw.items():
        if not isinstance(key, str):
            raise _fail(source, path, f"key {_show(key)} is not a param name", "quote it")
        options = list(want) if isinstance(want, (list, tuple)) else [want]
        if not options:
            raise _fail(source, f"{path}.{key}", "an empty list never holds", "list the values that activate it")
        unique: list[Any] = []
        for i, v in enumerate(options):
            where = f"{path}.{key}" if not isinstance(want, (list, tuple)) else f"{path}.{key}[{i}]"
            v = _check_scalar(v, source, where, "a condition value")
            if not any(_eq(v, u) for u in unique):
                unique.append(v)
        items.append((key, tuple(sorted(unique, key=_sort_key))))
    return tuple(sorted(items, key=lambda kv: kv[0]))


def _adjust_high(low: float, high: float, step: float) -> float | None:
    """Largest ``low + k*step <= high``, in Optuna's decimal arithmetic.

    Optuna re-checks ``high - low`` for divisibility by ``step`` on every suggest and warns
    when it fails, so the result must pass that check exactly; None when no float does (long
    decimals such as low 0.8495084624623044 with step 0.3).
    """
    d_low, d_high, d_step = Decimal(str(low)), Decimal(str(high)), Decimal(str(step))
    r = d_high - d_low
    if r % d_step == 0:
        return high
    adjusted = float((r // d_step) * d_step + d_low)
    return adjusted if (Decimal(str(adjusted)) - d_low) % d_step == 0 else None


def _parse_dim(raw: Mapping[Any, Any], source: str, path: str, variant: bool) -> _Dim:
    """One spec mapping: exactly one kind key plus options."""
    for key in raw:
        if not isinstance(key, str):
            raise _fail(source, path, f"key {_show(key)} is not a string", f"allowed keys: {', '.join(_ALL_KEYS)}")
        if key not in _ALL_KEYS:
            raise _fail(source, f"{path}.{key}", "unknown key",
                        f"{_did_you_mean(key, _ALL_KEYS)}allowed: {', '.join(_ALL_KEYS)}")
    kinds = [k for k in raw if k in _KINDS]
    if not kinds:
        raise _fail(source, path, "no kind given",
                    "give exactly one of float: [low, high], int: [low, high], choice: [...], value: x")
    if len(kinds) > 1:
        raise _fail(source, path, f"both {kinds[0]} and {kinds[1]} given", "give exactly one kind per param")
    kind = kinds[0]
    for key in raw:
        if key not in _ALLOWED[kind]:
            raise _fail(source, f"{path}.{key}", f"{key} does not apply to {kind}",
                        f"allowed with {kind}: {', '.join(_ALLOWED[kind])}")

    when = _parse_when(raw["when"], source, f"{path}.when") if "when" in raw else ()
    if variant and not when:
        raise _fail(source, path, "a variant needs `when`",
                    "give each variant a when: {param: value}, or write the param as a single mapping")
    per = None
    if "per" in raw:
        per = raw["per"]
        if not isinstance(per, str) or not per:
            raise _fail(source, f"{path}.per", f"expected the name of an int param, got {_kind(per)}",
                        "e.g. per: n_layers")

    if kind == "value":
        return _Dim("value", path, value=_check_fixed(raw["value"], source, f"{path}.value"), when=when, per=per)
    if kind == "choice":
        return _Dim("choice", path, choices=_parse_choices(raw["choice"], source, f"{path}.choice"), when=when, per=per)

    bounds = raw[kind]
    bpath = f"{path}.{kind}"
    if not isinstance(bounds, (list, tuple)) or len(bounds) != 2:
        raise _fail(source, bpath, f"expected [low, high], got {_kind(bounds)}" +
                    (f" of {len(bounds)} items" if isinstance(bounds, (list, tuple)) else ""),
                    f"e.g. {kind}: [0, 10]" if kind == "int" else f"e.g. {kind}: [0.0, 1.0]")
    low = _parse_number(bounds[0], kind, source, bpath, "low")
    high = _parse_number(bounds[1], kind, source, bpath, "high")
    if low > high:
        raise _fail(source, bpath, f"low {_render(low)} > high {_render(high)}",
                    f"write [{_render(high)}, {_render(low)}]")
    if kind == "float" and not math.isfinite(high - low):
        raise _fail(source, bpath, "the range is too wide to sample", "narrow it or use log: true")

    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise _fail(source, f"{path}.log", f"expected true or false, got {_kind(log)}", "write log: true or log: false")
    if log and kind == "float" and low <= 0:
        raise _fail(source, path, "low must be > 0 when log: true", "raise low above 0 or drop log")
    if log and kind == "int" and low < 1:
        raise _fail(source, path, "low must be >= 1 when log: true", "raise low to 1 or drop log")

    step: Any = 1 if kind == "int" else None
    given_high: Any = None
    if "step" in raw:
        spath = f"{path}.step"
        if log:
            raise _fail(source, spath, "step cannot be combined with log: true", "drop step or log")
        step = _parse_number(raw["step"], kind, source, spath, "step")
        if step <= 0:
            raise _fail(source, spath, f"step must be positive, got {_render(step)}", "use a step > 0 or drop step")
        if kind == "float":
            if (high - low) / step > _MAX_STEPS:
                raise _fail(source, spath, f"step {_render(step)} gives more than {_MAX_STEPS} values",
                            "use a larger step or drop step")
            try:
                adjusted = _adjust_high(low, high, step)
            except InvalidOperation:
                adjusted = None
            if adjusted is None:
                raise _fail(source, spath, f"low {_render(low)} + k * step {_render(step)} cannot end exactly "
                            f"at or below high {_render(high)}", "round low, high and step to fewer decimals")
            given_high, high = high, adjusted
        else:
            given_high, high = high, low + (high - low) // step * step
        if given_high == high:
            given_high = None
        if given_high is not None and high == low:  # a step past the whole range: a constant in disguise
            raise _fail(source, spath, f"step {_render(step)} is wider than the range [{_render(low)}, "
                        f"{_render(given_high)}], so its grid holds one value, {_render(low)}",
                        f"use a smaller step or a wider range, or write {{value: {_render(low)}}} for a fixed value")
    return _Dim(kind, path, low=low, high=high, log=log, step=step, when=when, per=per, given_high=given_high)


def _parse_choices(raw: Any, source: str, path: str) -> tuple[Any, ...]:
    if not isinstance(raw, (list, tuple)):
        raise _fail(source, path, f"expected a list of values, got {_kind(raw)}", "e.g. choice: [relu, gelu]")
    if not raw:
        raise _fail(source, path, "empty choice list", "list at least one value")
    seen: dict[Any, Any] = {}
    out = []
    for i, c in enumerate(raw):
        c = _check_scalar(c, source, f"{path}[{i}]", "a choice")
        # Python equality on purpose: Optuna looks choices up with ==, so 1, 1.0 and true collide.
        if c in seen:
            raise _fail(source, f"{path}[{i}]",
                        f"{_render(c)} repeats {_render(seen[c])} (Optuna cannot tell them apart)",
                        "list each value once")
        seen[c] = c
        out.append(c)
    return tuple(out)


def _parse_param(name: Any, raw: Any, source: str) -> _Param:
    """One entry of ``params:``: a spec mapping, a list of variants or a fixed value."""
    if not isinstance(name, str):
        hint = ("YAML reads yes/no/on/off/true/false as booleans; quote the name" if isinstance(name, bool)
                else "quote it")
        raise _fail(source, "params", f"param name {_show(name)} is not a string", hint)
    path = f"params.{name}"
    if not _NAME_RE.match(name):
        raise _fail(source, path, "invalid param name",
                    "use letters, digits, _ and -, starting with a letter or _ (. | = / , are reserved)")
    if isinstance(raw, Mapping):
        return _Param(name, (_parse_dim(raw, source, path, variant=False),), False, source)
    if isinstance(raw, (list, tuple)) and any(isinstance(x, Mapping) for x in raw):
        dims = []
        for i, item in enumerate(raw):
            if not isinstance(item, Mapping):
                raise _fail(source, f"{path}[{i}]", f"expected a variant mapping, got {_kind(item)}",
                            "a list of variants holds only mappings; write a fixed list as {value: [...]}")
            dims.append(_parse_dim(item, source, f"{path}[{i}]", variant=True))
        return _Param(name, tuple(dims), True, source)
    return _Param(name, (_Dim("value", path, value=_check_fixed(raw, source, path)),), False, source)


class _Loader:
    """Reads documents and their includes; one per ``load``/``from_mapping`` call."""

    def __init__(self) -> None:
        self.files = 0
        #: Params a document redefined over an included one: name -> the redefining document.
        self.overridden: dict[str, str] = {}

    def file(self, path: Path, chain: tuple[Path, ...]) -> dict[str, _Param]:
        self.files += 1
        source = _display(path)
        if self.files > _MAX_FILES:
            raise _fail(source, "include", f"more than {_MAX_FILES} files included", "include fewer files")
        data = load_yaml_file(path, source=source, error=SpaceError)
        return self.document(data, source, path.parent, (*chain, path))

    def document(self, data: Any, source: str, base_dir: Path, chain: tuple[Path, ...]) -> dict[str, _Param]:
        if not isinstance(data, Mapping):
            raise _fail(source, "<root>", f"a search space must be a mapping, got {_kind(data)}",
                        "write `params:` with one `name: spec` line per param")
        for key in data:
            if key not in _TOP_KEYS:
                raise _fail(source, str(key), "unknown top-level key",
                            f"{_did_you_mean(str(key), _TOP_KEYS)}allowed: {', '.join(_TOP_KEYS)}")
        if "version" in data:
            version = data["version"]
            if not (_is_int(version) and version == SPACE_VERSION):
                raise _fail(source, "version", f"unsupported version {_show(version)}", f"use version: {SPACE_VERSION}")
        merged: dict[str, _Param] = {}
        if "include" in data:
            for where, ref in self._include_refs(data["include"], source):
                path = self._resolve(ref, source, where, base_dir)
                if path in chain:
                    names = [_display(p) for p in chain[chain.index(path):]] + [_display(path)]
                    raise _fail(source, where, f"include cycle {' -> '.join(names)}", "remove one of these includes")
                merged.update(self.file(path, chain))
        if "params" not in data:
            raise _fail(source, "params", "missing",
                        "add `params:` with one `name: spec` line per param (params: {} for none)")
        params = data["params"]
        if not isinstance(params, Mapping):
            raise _fail(source, "params", f"expected a mapping of name: spec, got {_kind(params)}",
                        "e.g. params: {lr: {float: [1.0e-4, 1.0e-1], log: true}}")
        own = {}
        for name, raw in params.items():
            param = _parse_param(name, raw, source)
            own[param.name] = param
        self.overridden.update({name: source for name in own if name in merged})
        merged.update(own)  # whole-param override; an overridden param keeps its first position
        return merged

    @staticmethod
    def _include_refs(raw: Any, source: str) -> list[tuple[str, str]]:
        items = [("include", raw)] if isinstance(raw, str) else (
            [(f"include[{i}]", r) for i, r in enumerate(raw)] if isinstance(raw, (list, tuple)) else None
        )
        if items is None:
            raise _fail(source, "include", f"expected a file name or a list of them, got {_kind(raw)}",
                        "e.g. include: [optimizers.yaml]")
        for where, ref in items:
            if not isinstance(ref, str) or not ref.strip():
                raise _fail(source, where, f"expected a file name, got {_kind(ref)}", "e.g. include: [optimizers.yaml]")
        return items

    @staticmethod
    def _resolve(ref: str, source: str, where: str, base_dir: Path) -> Path:
        """Next to the including file, then the working directory, then ``search_spaces/``."""
        found = find_space_file(ref, base_dir)
        if found is None:
            raise _fail(source, where, f"file {ref!r} not found",
                        f"looked in {_display(base_dir) or '.'}, the working directory and {_display(SEARCH_SPACES_DIR)}")
        return found


def find_space_file(ref: str, base_dir: Path) -> Path | None:
    """The search-space file ``ref`` names: as given when absolute, else next to the file that names
    it, in the working directory, in the shipped ``search_spaces/``, then ``search_spaces/`` of the
    working directory. A study spec found on the way is passed over while a later place has the
    file: ``studies/sklearn_gbm.yaml`` hid the shipped space of that name from every study written
    next to the shipped ones ("name: unknown top-level key")."""
    p = Path(ref)
    candidates = [p] if p.is_absolute() else [base_dir / p, Path.cwd() / p, SEARCH_SPACES_DIR / p,
                                              Path.cwd() / "search_spaces" / p]
    found = [c for c in candidates if _is_file(c)]
    spaces = [c for c in found if not _is_study_spec(c)]
    chosen = spaces or found
    return chosen[0].resolve() if chosen else None


#: A top-level key only a study spec has (a search space's are version, include and params).
_STUDY_KEY_RE = re.compile(r"^(search_space|objective|task|n_trials|metrics?|directions?)\s*:", re.MULTILINE)


def _is_study_spec(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")[:100_000]
    except OSError:
        return False
    return _STUDY_KEY_RE.search(text) is not None


def _add_group(groups: dict[tuple[Any, ...], tuple[dict[str, Any], int]], values: dict[str, Any], count: int) -> None:
    """Add ``count`` grid points whose tracked params have ``values`` (see ``_grid_count``)."""
    # The type is part of the key: a group with x = 1 must not merge with one where x = true.
    key = tuple((k, type(v).__name__, v) for k, v in sorted(values.items()))
    groups[key] = (values, groups.get(key, (values, 0))[1] + count)


# --------------------------------------------------------------------------- the space


class SearchSpace:
    """A validated, fully resolved search space (includes merged, dependencies ordered).

    Build one with :meth:`load` or :meth:`from_mapping`. It is immutable; equal spaces have
    equal :meth:`to_dict` forms, which is how a resumed study notices a changed space.
    """

    def __init__(self, params: Mapping[str, _Param], *, source: str, overridden: Mapping[str, str] | None = None) -> None:
        """Private: use :meth:`load` or :meth:`from_mapping`."""
        self.source = source
        self._params: dict[str, _Param] = dict(params)
        self._check_references()
        self._left_out = self._drop_what_an_override_rules_out(overridden or {})
        self._order: list[_Param] = self._evaluation_order()
        self._check_semantics()
        #: Param names in evaluation order (dependencies first, otherwise as declared).
        self.names: list[str] = [p.name for p in self._order]
        self._canonical = {
            "version": SPACE_VERSION,
            "params": {name: self._canonical_param(self._params[name]) for name in sorted(self._params)},
        }

    # ----------------------------------------------------------------- construction

    @classmethod
    def load(cls, path: str | Path) -> SearchSpace:
        """Read a space file (and its includes)."""
        p = Path(path)
        source = _display(p.resolve()) if p.is_absolute() else str(path)
        if not _is_file(p):
            raise _fail(source, "<file>", "no such search-space file",
                        f"check the path (shipped spaces live in {_display(SEARCH_SPACES_DIR)})")
        loader = _Loader()
        return cls(loader.file(p.resolve(), ()), source=source, overridden=loader.overridden)

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], *, source: str = "<inline>", base_dir: Path | None = None
    ) -> SearchSpace:
        """Build a space from a mapping (inline in a spec); includes resolve from ``base_dir``."""
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        loader = _Loader()
        return cls(loader.document(data, source, base, ()), source=source, overridden=loader.overridden)

    def _check_references(self) -> None:
        for p in self._params.values():
            for d in p.dims:
                for key, _ in d.when:
                    if key not in self._params:
                        raise _fail(p.source, f"{d.path}.when.{key}", f"unknown param {key!r}",
                                    f"{_did_you_mean(key, self._params)}{_DEFINE_IT}")
                if d.per is not None and d.per not in self._params:
                    raise _fail(p.source, f"{d.path}.per", f"unknown param {d.per!r}",
                                f"{_did_you_mean(d.per, self._params)}{_DEFINE_IT}")

    def _drop_what_an_override_rules_out(self, overridden: Mapping[str, str]) -> list[str]:
        """Narrowing an included param (``optimizer: {choice: [adam, adamw]}`` over the shipped
        ``optimizers.yaml``) leaves the included file's conditions on values it no longer holds
        (``momentum: when: {optimizer: sgd}``): those values are dropped from the conditions, and
        a variant or param none of whose values can hold is left out, with a note, as are the
        params that depend on one left out. Before, the included file, which the user should not
        have to edit, was named in an error. A condition in the same file as its param, or on a
        param nobody redefined, is still checked (a typo is an error, see _check_condition).
        Returns the notes."""
        import dataclasses

        notes: list[str] = []
        changed = True
        while changed:
            changed = False
            for name, p in list(self._params.items()):
                kept: list[_Dim] = []
                for d in p.dims:
                    when: list[tuple[str, tuple[Any, ...]]] = []
                    dead = ""
                    for key, options in d.when:
                        target = self._params.get(key)
                        if target is None:
                            dead = f"{key} is left out"
                            break
                        if key not in overridden or target.source == p.source:
                            when.append((key, options))
                            continue
                        live = tuple(v for v in options if any(t.accepts(v) for t in target.dims))
                        if not live:
                            dead = f"{key} is never {', '.join(_render(v) for v in options)} ({overridden[key]})"
                            break
                        when.append((key, live))
                    if not dead and d.per is not None and d.per not in self._params:
                        dead = f"{d.per} is left out"
                    if dead:
                        changed = True
                        notes.append(f"{p.source}: {d.path} left out: {dead}")
                        continue
                    kept.append(d if tuple(when) == d.when else dataclasses.replace(d, when=tuple(when)))
                if not kept:
                    del self._params[name]
                elif kept != list(p.dims):
                    self._params[name] = dataclasses.replace(p, dims=tuple(kept))
                    changed = changed or len(kept) != len(p.dims)
        return notes

    def _evaluation_order(self) -> list[_Param]:
        """Topological order of the when/per dependencies; ties keep declaration order."""
        names = list(self._params)
        index = {n: i for i, n in enumerate(names)}
        deps = {n: set(self._params[n].deps()) for n in names}
        users: dict[str, list[str]] = {n: [] for n in names}
        for n in names:
            for dep in deps[n]:
                users[dep].append(n)
        missing = {n: len(deps[n]) for n in names}
        ready = [index[n] for n in names if missing[n] == 0]
        heapq.heapify(ready)
        order: list[_Param] = []
        while ready:
            name = names[heapq.heappop(ready)]
            order.append(self._params[name])
            for user in users[name]:
                missing[user] -= 1
                if missing[user] == 0:
                    heapq.heappush(ready, index[user])
        if len(order) < len(names):
            left = [n for n in names if missing[n] > 0]
            # Every leftover param depends on another leftover one: walking deps finds a cycle.
            walk = [left[0]]
            while True:
                nxt = min((d for d in deps[walk[-1]] if missing[d] > 0), key=index.__getitem__)
                if nxt in walk:
                    cycle = [*walk[walk.index(nxt):], nxt]
                    break
                walk.append(nxt)
            p = self._params[cycle[0]]
            raise _fail(p.source, p.path, f"dependency cycle {' -> '.join(cycle)} (through when/per)",
                        "remove one of these references")
        return order

    def _check_semantics(self) -> None:
        """References point at params that can hold the values they test or count."""
        for p in self._order:
            for d in p.dims:
                for key, options in d.when:
                    self._check_condition(p, d, key, options)
                if d.per is not None:
                    self._check_per_target(p, d)
            if p.variants:
                self._check_variants_exclusive(p)

    def _check_condition(self, p: _Param, d: _Dim, key: str, options: tuple[Any, ...]) -> None:
        target = self._params[key]
        path = f"{d.path}.when.{key}"
        if target.is_per:
            raise _fail(p.source, path, f"{key} is a per-layer list; a condition tests one value",
                        f"condition on its count ({target.dims[0].per}) instead")
        if any(t.kind == "value" and not _is_scalar(t.value) for t in target.dims):
            raise _fail(p.source, path, f"{key} is a fixed list or mapping; a condition tests one value",
                        "condition on a param that takes single values")
        for v in options:
            if not any(t.accepts(v) for t in target.dims):
                can = "; ".join(t.domain_text() for t in target.dims)
                raise _fail(p.source, path, f"{key} is never {_say(v)}", f"{key} is {can}")
            if not any(t.accepts(v) and not t.continuous for t in target.dims):  # only a continuous range holds it
                raise _fail(p.source, path, f"{key} is a continuous float ({'; '.join(t.domain_text() for t in target.dims)}), "
                            f"which is never exactly {_render(v)}, so the condition never holds",
                            f"a condition tests a choice, an int, a fixed value or a float with a step: give {key} "
                            "a step or make it a choice, or drop the condition")

    def _check_per_target(self, p: _Param, d: _Dim) -> None:
        target = self._params[d.per]  # type: ignore[index]
        path = f"{d.path}.per"
        for t in target.dims:
            if t.per is not None:
                raise _fail(p.source, path, f"{d.per} is itself a per-layer list", "per needs a single int param")
            if t.kind == "int":
                lo, hi = t.low, t.high
            elif t.kind == "value" and _is_int(t.value):
                lo = hi = t.value
            elif t.kind == "choice" and all(_is_int(c) for c in t.choices):
                lo, hi = min(t.choices), max(t.choices)
            else:
                raise _fail(p.source, path, f"{d.per} is not an int param ({t.domain_text()})",
                            "per needs an int param, e.g. n_layers: {int: [1, 3]}, an int choice or a fixed integer")
            if lo < 0 or hi > MAX_PER:
                raise _fail(p.source, path, f"{d.per} ranges over [{lo}, {hi}], not a count in [0, {MAX_PER}]",
                            f"keep the count param within [0, {MAX_PER}]")

    @staticmethod
    def _check_variants_exclusive(p: _Param) -> None:
        """Catch variants that are provably active together (same keys, overlapping values)."""
        for (i, a), (j, b) in itertools.combinations(enumerate(p.dims), 2):
            wa, wb = dict(a.when), dict(b.when)
            if wa.keys() == wb.keys() and all(any(_eq(x, y) for x in wa[k] for y in wb[k]) for k in wa):
                raise _fail(p.source, p.path, f"variants [{i}] ({a.cond}) and [{j}] ({b.cond}) can both be active",
                            "make their when conditions exclusive")

    @staticmethod
    def _canonical_param(p: _Param) -> Any:
        if p.variants:
            return [d.canonical() for d in sorted(p.dims, key=lambda d: d.cond)]
        return p.dims[0].canonical()

    # ----------------------------------------------------------------- evaluation

    def _active(self, p: _Param, values: Mapping[str, Any]) -> _Dim | None:
        """The spec of ``p`` that applies given the values chosen so far, or None (inactive)."""
        active = [d for d in p.dims if d.holds(values)]
        if len(active) > 1:
            shown = ", ".join(f"{k}={_render(values[k]) if _is_scalar(values[k]) else _show(values[k])}"
                              for k in p.deps() if k in values)
            raise _fail(p.source, p.path, f"variants {active[0].cond} and {active[1].cond} are both active for {shown}",
                        "make their when conditions exclusive")
        if not active:
            return None
        d = active[0]
        if d.per is not None:
            if d.per not in values:
                return None  # the count param is inactive, so is this one
            n = values[d.per]
            if not _is_int(n) or not 0 <= n <= MAX_PER:
                raise _fail(p.source, f"{d.path}.per", f"{d.per} = {_show(n)} is not a count in [0, {MAX_PER}]",
                            f"keep {d.per} within [0, {MAX_PER}]")
        return d

    def suggest(self, trial: BaseTrial) -> dict[str, Any]:
        """Ask ``trial`` for every active param (define-by-run) and return the user-facing dict.

        Works with any Optuna trial, including ``FixedTrial`` and trials with enqueued params,
        because Optuna's ``suggest_*`` return fixed values unchanged.
        """
        values: dict[str, Any] = {}
        for p in self._order:
            d = self._active(p, values)
            if d is None:
                continue
            base = p.optuna_name(d)
            if d.per is None:
                values[p.name] = d.sample(trial, base)
            else:
                values[p.name] = [d.sample(trial, f"{base}.{i}") for i in range(values[d.per])]
        return values

    def display_names(self, optuna_names: Iterable[str]) -> dict[str, str]:
        """Optuna names as a reader should see them: ``lr (optimizer=adam/adamw)`` for the variant
        ``lr|optimizer=adam/adamw``, ``drop.0 (optimizer=adam)`` for a per-layer one; others as
        they are. Optuna's names carry a variant's condition so that the two ranges of ``lr`` are
        two params; a report needs the condition too, not the syntax built for uniqueness. Read
        from the space, not parsed: ``a|k=1.5`` is no per-layer ``a|k=1``."""
        variants = {p.optuna_name(d): (p, d) for p in self._order if p.variants for d in p.dims}
        out: dict[str, str] = {}
        for name in optuna_names:
            base, layer = name, ""
            if name not in variants:
                head, _, tail = name.rpartition(".")
                if tail.isdigit() and head in variants and variants[head][1].per is not None:
                    base, layer = head, f".{tail}"
            if base in variants:
                p, d = variants[base]
                out[name] = f"{p.name}{layer} ({d.cond.replace(',', ', ')})"
            else:
                out[name] = name
        return out

    def params_from_optuna(self, optuna_params: Mapping[str, Any]) -> dict[str, Any]:
        """Rebuild the user-facing dict from a trial's Optuna-named params (plus fixed values).

        Params whose Optuna names are missing (a trial that failed while suggesting, or one
        recorded under another space) are left out rather than invented.
        """
        values: dict[str, Any] = {}
        for p in self._order:
            d = self._active(p, values)
            if d is None:
                continue
            n = None if d.per is None else values[d.per]
            if d.kind == "value":
                values[p.name] = copy.deepcopy(d.value) if n is None else [copy.deepcopy(d.value) for _ in range(n)]
                continue
            base = p.optuna_name(d)
            if n is None:
                if base in optuna_params:
                    values[p.name] = d.on_grid(optuna_params[base])
            elif all(f"{base}.{i}" in optuna_params for i in range(n)):
                values[p.name] = [d.on_grid(optuna_params[f"{base}.{i}"]) for i in range(n)]
        return values

    def _problem(self, params: Any) -> str | None:
        """Why ``params`` (user-facing) is not a point of this space, or None when it is."""
        if not isinstance(params, Mapping):
            return f"expected a mapping of params, got {_kind(params)}"
        for p in self._order:
            active = [d for d in p.dims if d.holds(params)]
            if len(active) > 1:
                return f"{p.name}: several variants are active"
            d = active[0] if active else None
            if d is not None and d.per is not None and d.per not in params:
                d = None
            if d is None:
                if p.name in params:
                    return f"{p.name}: given but inactive"
                continue
            if p.name not in params:
                return f"{p.name}: missing"
            v = params[p.name]
            if d.per is not None:
                n = params[d.per]
                if not isinstance(v, (list, tuple)) or len(v) != n:
                    return f"{p.name}: expected a list of {n} values (per {d.per}), got {_show(v)}"
                bad = [x for x in v if not d.accepts(x)]
                if bad:
                    return f"{p.name}: {_show(bad[0])} is not {d.domain_text()}"
            elif not d.accepts(v):
                return f"{p.name}: {_show(v)} is not {d.domain_text()}"
        unknown = [k for k in params if k not in self._params]
        if unknown:
            return f"{_show(unknown[0])}: not a param of this space"
        return None

    def partial_point_problem(self, params: Any) -> tuple[str, str, str] | None:
        """Why ``params`` cannot be enqueued as a (possibly partial) point of this space, or None.

        A partial point fixes some params and leaves the others to the sampler (Optuna's
        ``enqueue_trial``). Each given param must be active and inside its range; one whose range
        or presence depends on others (``when``, ``per``) needs those given too, since they decide
        which of its Optuna params is fixed. Returns (the param, the problem, the fix).
        """
        if not isinstance(params, Mapping) or not params:
            return "", "an empty point" if params == {} else f"expected a mapping of param values, got {_kind(params)}", \
                "write e.g. {lr: 0.001, optimizer: adam}"
        for key in params:
            if key not in self._params:
                known = ", ".join(sorted(self._params))
                return str(key), "not a param of this search space", f"use the space's names: {known}"[:300]
        for p in self._order:
            if p.name not in params:
                continue
            missing = [dep for dep in p.deps() if dep not in params]
            if missing:
                return p.name, f"its range or presence depends on {', '.join(missing)}", \
                    f"give {', '.join(missing)} in the same point"
            d = self._active(p, params)
            if d is None:
                return p.name, "inactive for the values this point gives " + ", ".join(
                    f"{k}={_show(params[k])}" for k in p.deps()), "drop it from this point"
            v = params[p.name]
            if d.per is not None:
                n = params[d.per]
                if not isinstance(v, (list, tuple)) or len(v) != n:
                    return p.name, f"expected a list of {n} values (one per {d.per}), got {_show(v)}", \
                        f"give {n} values or change {d.per}"
                bad = [x for x in v if not d.accepts(x)]
                if bad:
                    return p.name, f"{_show(bad[0])} is not {d.domain_text()}", "pick values inside the space"
            elif d.kind == "value" and not d.accepts(v):
                return p.name, f"{_show(v)} given, but the space fixes it at {_show(d.value)}", \
                    "drop it from this point (fixed values are never tuned)"
            elif not d.accepts(v):
                return p.name, f"{_show(v)} is not {d.domain_text()}", "pick a value inside the space"
        return None

    def partial_optuna_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """A (possibly partial) point in Optuna's names, for ``study.enqueue_trial``; fixed values
        are not Optuna params and are left out. Check it with :meth:`partial_point_problem` first."""
        out: dict[str, Any] = {}
        for p in self._order:
            if p.name not in params:
                continue
            d = self._active(p, params)
            if d is None or d.kind == "value":
                continue
            base = p.optuna_name(d)
            if d.per is None:
                out[base] = _as_drawn(d, params[p.name])
            else:
                out.update((f"{base}.{i}", _as_drawn(d, v)) for i, v in enumerate(params[p.name]))
        return out

    def contains(self, params: Mapping[str, Any]) -> bool:
        """Whether a user-facing dict is a point of this space.

        Checks activity (inactive params absent, active ones present), bounds, steps, choices,
        fixed values and ``per`` list lengths.
        """
        return self._problem(params) is None

    def _flat(self, params: Mapping[str, Any]) -> list[tuple[str, _Dim, Any]]:
        problem = self._problem(params)
        if problem is not None:
            raise _fail(self.source, "params", f"not a point of this space: {problem}", "pick values inside the space")
        out: list[tuple[str, _Dim, Any]] = []
        for p in self._order:
            d = self._active(p, params)
            if d is None or d.kind == "value":
                continue
            base = p.optuna_name(d)
            if d.per is None:
                out.append((base, d, params[p.name]))
            else:
                out.extend((f"{base}.{i}", d, v) for i, v in enumerate(params[p.name]))
        return out

    def to_optuna_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Flatten a user-facing dict to Optuna-named values (the inverse of params_from_optuna)."""
        return {name: value for name, _, value in self._flat(params)}

    def distributions_for(self, params: Mapping[str, Any]) -> dict[str, BaseDistribution]:
        """Optuna distributions of the active Optuna-named params of a user-facing dict.

        With :meth:`to_optuna_params` this records a point (e.g. a grid point) with
        ``optuna.trial.create_trial``/``study.add_trial`` exactly as ``suggest`` would have.
        """
        return {name: d.distribution() for name, d, _ in self._flat(params)}

    def optuna_distribution(self, name: str) -> BaseDistribution | None:
        """The distribution this space draws the Optuna-named param ``name`` from (``lr``, the
        variant ``lr|optimizer=adam/adamw``, ``w.2`` of a per-layer ``w``), or None when it draws
        no such param. A study tuner did not create (plain Optuna) stores no space: its trials'
        names and distributions are all there is to check a resume against."""
        dims = {p.optuna_name(d): d for p in self._order for d in p.dims if d.kind != "value"}
        d = dims.get(name)
        if d is not None and d.per is None:
            return d.distribution()
        head, _, tail = name.rpartition(".")
        d = dims.get(head)
        if d is not None and d.per is not None and tail.isdigit() and int(tail) < MAX_PER:
            return d.distribution()
        return None

    def drawn_by_every_trial(self) -> list[str]:
        """Optuna names of the params every trial draws (no ``when``, no ``per``, not a fixed value)."""
        return [p.optuna_name(p.dims[0]) for p in self._order
                if len(p.dims) == 1 and not p.dims[0].when and not p.dims[0].per and p.dims[0].kind != "value"]

    def grid(self) -> list[dict[str, Any]]:
        """Every point of a finite space, as Optuna-named flat dicts of the active params.

        Deterministic order: the first param in evaluation order varies slowest. Fixed values
        are not Optuna params and are left out (``params_from_optuna`` adds them back).
        """
        for p in self._order:
            for dim in p.dims:
                if dim.grid_size() is None:
                    what = "a log-scaled int range" if dim.kind == "int" else "a continuous float range"
                    fix = ("drop log (the grid then takes every integer; add step to thin it) or use choice: [...]"
                           if dim.kind == "int" else "add step: ... or use choice: [...]")
                    raise _fail(p.source, dim.path, f"grid search needs a finite space, but {p.name} is {what}", fix)
        # Only values that other params test or count need to be tracked per point.
        tracked = {dep for p in self._order for dep in p.deps()}
        self._grid_count(tracked)  # refuses an oversized grid before building any of it
        points: list[tuple[dict[str, Any], dict[str, Any]]] = [({}, {})]
        for p in self._order:
            expanded: list[tuple[dict[str, Any], dict[str, Any]]] = []
            for values, flat in points:
                d = self._active(p, values)
                if d is None or d.kind == "value":
                    if d is not None and p.name in tracked:
                        values = {**values, p.name: d.value}
                    expanded.append((values, flat))
                    continue
                n = 1 if d.per is None else values[d.per]
                base = p.optuna_name(d)
                for combo in itertools.product(d.grid_values(), repeat=n):
                    new_flat = dict(flat)
                    if d.per is None:
                        new_flat[base] = combo[0]
                    else:
                        new_flat.update((f"{base}.{i}", v) for i, v in enumerate(combo))
                    new_values = {**values, p.name: combo[0]} if p.name in tracked else values
                    expanded.append((new_values, new_flat))
            points = expanded
        return [flat for _, flat in points]

    def _grid_count(self, tracked: set[str]) -> int:
        """Number of grid points, counted without building them; raises above the cap.

        Points are grouped by the values of the tracked params (those that decide activity
        or counts); every other param only multiplies its group's count.
        """
        groups: dict[tuple[Any, ...], tuple[dict[str, Any], int]] = {(): ({}, 1)}
        for p in self._order:
            merged: dict[tuple[Any, ...], tuple[dict[str, Any], int]] = {}
            for values, count in groups.values():
                d = self._active(p, values)
                if d is None:
                    _add_group(merged, values, count)
                elif p.name in tracked:  # a condition/count target: never per, so one value per point
                    if count * (d.grid_size() or 1) > MAX_GRID_POINTS:
                        self._grid_too_large()
                    for v in [d.value] if d.kind == "value" else d.grid_values():
                        _add_group(merged, {**values, p.name: v}, count)
                else:
                    n = 1 if d.per is None else values[d.per]
                    _add_group(merged, values, count * (d.grid_size() or 1) ** n)
            if sum(c for _, c in merged.values()) > MAX_GRID_POINTS:
                self._grid_too_large()
            groups = merged
        return sum(c for _, c in groups.values())

    def _grid_too_large(self) -> None:
        raise _fail(self.source, "params", f"the grid has more than {MAX_GRID_POINTS:,} points",
                    "use coarser steps or fewer choices, or another sampler")

    # ----------------------------------------------------------------- inspection

    def to_dict(self) -> dict[str, Any]:
        """Canonical, fully resolved, JSON-serialisable form; equal spaces give equal dicts.

        Params are sorted by name and every spec is normalised (defaults dropped, ``when``
        values as sorted lists, variants sorted), so include order and formatting do not
        matter; ``SearchSpace.from_mapping(space.to_dict())`` rebuilds an equal space.
        """
        return copy.deepcopy(self._canonical)

    def describe(self) -> list[str]:
        """One human-readable line per param (per variant), in evaluation order."""
        lines = []
        for p in self._order:
            for d in p.dims:
                text = f"{p.optuna_name(d)}: {d.domain_text()}"
                if d.per:
                    text += f", one per {d.per}"
                if d.when and not p.variants:
                    text += f", when {d.cond}"
                lines.append(text)
        return lines

    def notes(self) -> list[str]:
        """Things the space does that its text does not show (a ``high`` off the ``step`` grid).

        Not errors: ``validate`` and the run header print them so that nothing changes silently.
        """
        return [*self._left_out, *(note for p in self._order for d in p.dims if (note := d.high_note()) is not None)]

    def declared_params(self) -> Iterator[tuple[str, str, str]]:
        """``(source, path, name)`` of every parameter the space declares (its file, for messages)."""
        for p in self._order:
            yield p.source, p.path, p.name

    def extreme_values(self) -> Iterator[tuple[str, str, str, str, Any]]:
        """``(source, path, name, what, value)`` for every choice, range end and fixed value.

        A task checks each of them before any trial runs (``Task.check_params``): a value it
        refuses would otherwise fail every trial that draws it. ``what`` is ``choice``, ``low``,
        ``high`` or ``value``. Per-layer params and lists are left to the trial-time check: whether
        a list fits depends on other params (``channels: [16]`` needs ``n_conv: 1``), and each value
        is checked alone, against the task's defaults for the rest.
        """
        for p in self._order:
            for d in p.dims:
                if d.per:
                    continue
                if d.kind == "choice":
                    for choice in d.choices:
                        if _is_scalar(choice):
                            yield p.source, d.path, p.name, "choice", choice
                elif d.kind == "value":
                    if _is_scalar(d.value):
                        yield p.source, d.path, p.name, "value", d.value
                else:
                    yield p.source, d.path, p.name, "low", d.low
                    yield p.source, d.path, p.name, "high", d.high

    def distributions_in_every_trial(self) -> dict[str, BaseDistribution]:
        """Optuna's name and distribution of each parameter every trial draws (no ``when``, no
        ``per``, not fixed): the space a sampler modelling all trials alike can lay out up front."""
        return {p.name: p.dims[0].distribution() for p in self._order
                if len(p.dims) == 1 and not p.dims[0].when and not p.dims[0].per and p.dims[0].kind != "value"}

    def ranges_in_every_trial(self) -> dict[str, BaseDistribution]:
        """Optuna's name and distribution of each number range every trial draws (no ``when``, no
        ``per``): the space CMA-ES models, so the names its ``x0`` must give, each in its range."""
        return {p.name: p.dims[0].distribution() for p in self._order
                if len(p.dims) == 1 and not p.dims[0].when and not p.dims[0].per
                and p.dims[0].kind in ("float", "int") and p.dims[0].low != p.dims[0].high}

    def has_categorical(self) -> bool:
        """Whether any parameter is a choice among two or more values.

        tuner's sampler and pruner defaults depend on it (``tuner/engine/_plugins.py``).
        """
        return any(d.kind == "choice" and len(d.choices) > 1 for p in self._order for d in p.dims)

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SearchSpace):
            return NotImplemented
        # JSON text, not ==: Python's == would call a choice of 1 equal to one of true.
        return json.dumps(self._canonical, sort_keys=True) == json.dumps(other._canonical, sort_keys=True)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SearchSpace({self.source!r}, params={getattr(self, 'names', list(self._params))})"
