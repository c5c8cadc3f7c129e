"""Bad input (issue 7): generated broken study specs and search spaces always end in one line.

Every case starts from a valid study (a spec file, its search-space file and a file that space
includes) and breaks it with mutations of one category: wrong types, missing keys, unknown
sampler/pruner/task, inverted or non-positive log ranges, cyclic includes, conditionals on
unknown parameters, empty choice lists, huge values, non-UTF-8 bytes, YAML bombs, unknown and
duplicate keys, and a few mutations at once. Hypothesis generates them deterministically (``derandomize=True``).

Why two layers: the in-process layer calls ``tuner._api.validate`` -- the very function behind
``tuner run`` and ``tuner validate`` -- so hundreds of cases run in seconds and each must raise
tuner's ``SpecError`` with a one-line ``file: key.path: problem; fix`` message that names the
broken file and key. The CLI layer then runs a fixed sample through the real ``tuner run`` in
a subprocess against a storage that already holds a finished study: exit code 2, exactly one
line on stderr, no traceback, and the database exactly as it was.

The number of cases per category is printed (``pytest -s``) and written to
``test-artifacts/bad_input_counts.json``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT
from tuner._api import validate
from tuner.exceptions import SpecError
from tuner.spec import PRUNERS, SAMPLERS

# --------------------------------------------------------------------------- the valid base

STUDY = "existing"  # the broken specs reuse the name of the study already in the storage

BASE_SPEC: dict[str, Any] = {
    "version": 1, "name": STUDY, "description": "bad-input base", "objective": "tests.objectives:quadratic",
    "search_space": "space.yaml", "metric": "value", "direction": "minimize", "n_trials": 3, "concurrency": 1,
    "resources": {"cpus": 1}, "sampler": "tpe", "pruner": "none", "seed": 0, "max_failures": 2, "timeout": "10m",
    "trial_timeout": "1m", "keep_checkpoints": 2,
}
BASE_SPACE: dict[str, Any] = {
    "include": ["common.yaml"],
    "params": {
        "x": {"float": [-5.0, 5.0]},
        "opt": {"choice": ["sgd", "adam"]},
        "momentum": {"float": [0.5, 0.99], "when": {"opt": "sgd"}},
        "lr": {"float": [1.0e-4, 1.0e-1], "log": True},
        "n": {"int": [1, 3]},
        "width": {"int": [8, 64], "log": True, "per": "n"},
    },
}
BASE_COMMON: dict[str, Any] = {"params": {"epochs": 3, "dropout": {"float": [0.0, 0.5], "step": 0.1}}}
PARAM_NAMES = {"x", "opt", "momentum", "lr", "n", "width", "epochs", "dropout"}
TOP_LEVEL = set(BASE_SPEC) | {"task", "task_args", "metrics", "directions", "storage", "artifacts_dir"}
TASKS = {"cnn", "mlp", "resnet", "sklearn", "text"}

SPEC, SPACE, COMMON = "study.yaml", "space.yaml", "common.yaml"


@dataclass
class Case:
    """Files of one broken study and where its error may point: (file name, key-path regex) pairs."""

    category: str
    spec: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(BASE_SPEC))
    space: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(BASE_SPACE))
    common: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(BASE_COMMON))
    raw: dict[str, bytes] = field(default_factory=dict)  # files written as these bytes instead
    expect: list[tuple[str, str]] = field(default_factory=list)
    label: str = ""
    flags: list[str] = field(default_factory=list)  # extra `tuner run` flags (the CLI sample only)

    def __repr__(self) -> str:  # what hypothesis prints for a failing case
        return f"Case({self.category!r}, {self.label!r}, expect={self.expect!r})"

    def files(self) -> dict[str, bytes]:
        out = {name: _dump_yaml(data) for name, data in ((SPEC, self.spec), (SPACE, self.space), (COMMON, self.common))}
        out.update(self.raw)
        return out

    def write(self, folder: Path) -> Path:
        for name, content in self.files().items():
            (folder / name).write_bytes(content)
        return folder / SPEC


def _dump_yaml(data: Any) -> bytes:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=10**9).encode("utf-8")


def _case(category: str, label: str, mutate: Callable[[Case], list[tuple[str, str]]]) -> Case:
    case = Case(category, label=label)
    case.expect = mutate(case)
    return case


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for key in keys[:-1]:
        data = data[key]
    data[keys[-1]] = value


def _param(case: Case, name: str) -> dict[str, Any]:
    return case.space["params"][name]


# --------------------------------------------------------------------------- value strategies

_letters = st.text("abcdefghijklmnopqrstuvwxyz_ ", min_size=1, max_size=12).filter(lambda s: s.strip() != "")
_nonint_floats = st.floats(0.01, 0.99).map(lambda f: 1.0 + f)
_lists = st.lists(st.integers(-3, 3), min_size=1, max_size=3)
_maps = st.dictionaries(st.sampled_from(["a", "b", "k"]), st.integers(0, 3), min_size=1, max_size=2)
_any_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=16)
_identifiers = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)

#: Spec keys and values each is certain to refuse (null only where it does not mean "default").
_WRONG_SPEC_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "name": st.one_of(st.integers(), _nonint_floats, st.booleans(), _lists, _maps, _letters.map(lambda s: s + " !")),
    "n_trials": st.one_of(_letters, _nonint_floats, st.booleans(), _lists, _maps, st.none()),
    "concurrency": st.one_of(_letters, _nonint_floats, st.booleans(), _lists, _maps, st.none()),
    "max_failures": st.one_of(_letters, _nonint_floats, st.booleans(), _lists, _maps),
    "seed": st.one_of(_letters, _nonint_floats, st.booleans(), _lists, _maps),
    "timeout": st.one_of(_letters.filter(lambda s: not re.search(r"\d", s)), st.booleans(), _lists, _maps,
                         st.integers(max_value=0)),
    "trial_timeout": st.one_of(_letters.filter(lambda s: not re.search(r"\d", s)), st.booleans(), _lists, _maps),
    "resources": st.one_of(_letters, st.integers(1, 99), _lists, st.just(True)),
    "resources.cpus": st.one_of(_letters, st.booleans(), _lists, _maps, st.floats(max_value=-0.01),
                                st.integers(4097, 10**6)),
    "sampler": st.one_of(st.integers(), _nonint_floats, _lists, st.just(True)),
    "pruner": st.one_of(st.integers(), _nonint_floats, _lists, st.just(True)),
    "metric": st.one_of(st.integers(), _nonint_floats, st.booleans(), _lists, _maps, st.just("")),
    "direction": st.one_of(st.integers(), st.booleans(), _lists, _maps,
                           _letters.filter(lambda s: s.lower() not in ("max", "min", "maximize", "minimize"))),
    "search_space": st.one_of(st.integers(), _nonint_floats, st.booleans(), _lists),
    "objective": st.one_of(st.integers(), st.booleans(), _lists, _maps, _letters),
    "storage": st.one_of(st.integers(), _nonint_floats, st.booleans(), _lists, _maps),
    "artifacts_dir": st.one_of(st.integers(), _nonint_floats, st.booleans(), _lists, _maps),
    "description": st.one_of(st.integers(), _nonint_floats, st.booleans(), _lists, _maps),
    "keep_checkpoints": st.one_of(_letters.filter(lambda s: s != "all"), _nonint_floats, st.booleans(), _lists,
                                  st.integers(max_value=0)),
    "version": st.one_of(_letters, st.integers(2, 10**6), st.integers(max_value=0), _lists, _maps),
    "task_args": st.one_of(st.integers(1, 9), _lists, _letters, _maps),  # only for built-in tasks
    # a point outside the space, a param it does not have, a list of non-points, not a list at all
    "enqueue": st.one_of(st.integers(), _letters, _maps, _lists, st.just([{}]),
                         st.floats(5.01, 1e6).map(lambda x: [{"x": x}]), _maps.map(lambda m: [m])),
}

#: Search-space fields and values each is certain to refuse: (param, field or None for the bound, strategy, key).
_WRONG_SPACE_VALUES: list[tuple[str, str, st.SearchStrategy[Any], str]] = [
    ("x", "float.low", st.one_of(_letters, st.booleans(), _lists, _maps, st.none()), r"params\.x\.float"),
    ("n", "int.high", _nonint_floats.map(lambda f: f + 3), r"params\.n\.int"),
    ("lr", "log", st.one_of(_letters, st.integers(), _lists), r"params\.lr\.log"),
    ("momentum", "when", st.one_of(_letters, st.integers(), _lists, st.just({})), r"params\.momentum\.when"),
    ("width", "per", st.one_of(st.integers(), st.booleans(), _lists, _maps, st.just("")), r"params\.width\.per"),
    ("opt", "choice", st.one_of(st.integers(), _letters, _maps), r"params\.opt\.choice"),
    ("opt", "choice.item", st.one_of(_lists, _maps), r"params\.opt\.choice\[0\]"),
    ("x", "unknown", st.sampled_from(["lgo", "stpe", "range", "default"]), r"params\.x\.\w+"),
]


# --------------------------------------------------------------------------- category strategies


@st.composite
def wrong_type(draw: st.DrawFn) -> Case:
    """A value of the wrong type for one spec key or one search-space field."""
    case = Case("wrong_type")
    if draw(st.booleans()):
        key = draw(st.sampled_from(sorted(_WRONG_SPEC_VALUES)))
        _set(case.spec, key, draw(_WRONG_SPEC_VALUES[key]))
        case.expect = [(SPEC, re.escape(key))]
    else:
        name, where, values, key = draw(st.sampled_from(_WRONG_SPACE_VALUES))
        value, param = draw(values), _param(case, name)
        if where == "float.low":
            param["float"][0] = value
        elif where == "int.high":
            param["int"][1] = value
        elif where == "choice.item":
            param["choice"][0] = value
        elif where == "unknown":
            param[value] = True
        else:
            param[where] = value
        case.expect = [(SPACE, key)]
    case.label = f"{case.expect[0][1]}"
    return case


@st.composite
def missing_key(draw: st.DrawFn) -> Case:
    """A key the spec or space cannot do without is gone (or names a file that is not there)."""
    case = Case("missing_key")
    which = draw(st.sampled_from(["name", "objective", "search_space", "params", "common_params", "kind",
                                  "bound", "directions", "include_file", "space_file", "objective_file"]))
    missing = draw(_identifiers.filter(lambda s: s not in ("common", "space", "study"))) + ".yaml"
    if which in ("name", "search_space"):
        del case.spec[which]
        case.expect = [(SPEC, which)]
    elif which == "objective":
        del case.spec["objective"]
        case.expect = [(SPEC, "task")]
    elif which == "params":
        del case.space["params"]
        case.expect = [(SPACE, "params")]
    elif which == "common_params":
        del case.common["params"]
        case.expect = [(COMMON, "params")]
    elif which == "kind":
        name = draw(st.sampled_from(["x", "lr", "n"]))
        kind = next(k for k in ("float", "int") if k in _param(case, name))
        del _param(case, name)[kind]
        case.expect = [(SPACE, rf"params\.{name}")]
    elif which == "bound":
        del _param(case, "x")["float"][draw(st.integers(0, 1))]
        case.expect = [(SPACE, r"params\.x\.float")]
    elif which == "directions":
        del case.spec["metric"], case.spec["direction"]
        case.spec["metrics"] = ["value", draw(_identifiers.map(lambda s: s + "_m"))]
        case.expect = [(SPEC, "directions")]
    elif which == "include_file":
        case.space["include"].append(missing)
        case.expect = [(SPACE, r"include\[1\]")]
    elif which == "space_file":
        case.spec["search_space"] = missing
        case.expect = [(SPEC, "search_space")]
    else:
        case.spec["objective"] = f"{missing[:-5]}.py:objective"
        case.expect = [(SPEC, "objective")]
    case.label = which
    return case


@st.composite
def unknown_plugin(draw: st.DrawFn) -> Case:
    """An unknown sampler, pruner or task; an argument they do not take, or a value they reject."""
    case = Case("unknown_plugin")
    which = draw(st.sampled_from(["sampler", "pruner", "sampler.name", "pruner.name", "task", "sampler.args",
                                  "pruner.args", "arg_type", "arg_value"]))
    if which in ("sampler", "pruner"):
        allowed = SAMPLERS if which == "sampler" else PRUNERS
        case.spec[which] = draw(st.one_of(_letters, _any_text).filter(lambda s: s.lower() not in allowed))
        case.expect = [(SPEC, which)]
    elif which in ("sampler.name", "pruner.name"):
        kind = which.split(".")[0]
        allowed = SAMPLERS if kind == "sampler" else PRUNERS
        case.spec[kind] = {"name": draw(_letters.filter(lambda s: s.lower() not in allowed)), "args": {}}
        case.expect = [(SPEC, re.escape(which))]
    elif which == "task":
        del case.spec["objective"]
        case.spec["task"] = draw(st.one_of(_letters, _any_text).filter(lambda s: s not in TASKS))
        case.expect = [(SPEC, "task")]
    elif which in ("sampler.args", "pruner.args"):
        kind = which.split(".")[0]
        arg = "bogus_" + draw(_identifiers)
        case.spec[kind] = {"name": "tpe" if kind == "sampler" else "median", "args": {arg: 1}}
        case.expect = [(SPEC, re.escape(f"{which}.{arg}"))]
    elif which == "arg_type":
        value = draw(st.one_of(_letters, _nonint_floats, _lists, _maps, st.integers(2**53 + 1, 10**30)))
        case.spec["sampler"] = {"name": "tpe", "args": {"n_startup_trials": value}}
        case.expect = [(SPEC, r"sampler\.args\.n_startup_trials")]
    else:
        case.spec["pruner"] = draw(st.sampled_from([
            {"name": "percentile", "args": {"percentile": draw(st.floats(100.5, 1e6))}},
            {"name": "median", "args": {"n_startup_trials": draw(st.integers(-10**6, -1))}},
            {"name": "asha", "args": {"reduction_factor": draw(st.integers(-5, 1))}},
        ]))
        # integer counts out of range name their field (tuner/engine/_plugins.py _MIN_INT_ARGS)
        case.expect = [(SPEC, r"pruner\.args(\.n_startup_trials|\.reduction_factor)?")]
    case.label = which
    return case


@st.composite
def bad_range(draw: st.DrawFn) -> Case:
    """Inverted ranges, non-positive log ranges, non-positive steps, and spec numbers out of range."""
    case = Case("bad_range")
    which = draw(st.sampled_from(["float_inverted", "int_inverted", "float_log", "int_log", "float_step",
                                  "int_step", "step_and_log", "n_trials", "concurrency", "seed", "gpus",
                                  "no_resources"]))
    if which == "float_inverted":
        a, b = draw(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=2, unique=True).map(sorted))
        _param(case, "x")["float"] = [b, a]
        case.expect = [(SPACE, r"params\.x\.float")]
    elif which == "int_inverted":
        a, b = draw(st.lists(st.integers(-10**6, 10**6), min_size=2, max_size=2, unique=True).map(sorted))
        _param(case, "n")["int"] = [b, a]
        case.expect = [(SPACE, r"params\.n\.int")]
    elif which == "float_log":
        low = draw(st.floats(-1e6, 0.0))
        _param(case, "lr")["float"] = [low, low + draw(st.floats(0.5, 1e3))]
        case.expect = [(SPACE, r"params\.lr")]
    elif which == "int_log":
        low = draw(st.integers(-100, 0))
        _param(case, "width")["int"] = [low, low + draw(st.integers(1, 100))]
        case.expect = [(SPACE, r"params\.width")]
    elif which == "float_step":
        _param(case, "x")["step"] = draw(st.floats(-10.0, 0.0))
        case.expect = [(SPACE, r"params\.x\.step")]
    elif which == "int_step":
        _param(case, "n")["step"] = draw(st.integers(-10, 0))
        case.expect = [(SPACE, r"params\.n\.step")]
    elif which == "step_and_log":
        _param(case, "lr")["step"] = draw(st.floats(1e-4, 1e-2))
        case.expect = [(SPACE, r"params\.lr\.step")]
    elif which in ("n_trials", "concurrency"):
        case.spec[which] = draw(st.integers(max_value=0))
        case.expect = [(SPEC, which)]
    elif which == "seed":
        case.spec["seed"] = draw(st.one_of(st.integers(max_value=-1), st.integers(2**32, 2**64)))
        case.expect = [(SPEC, "seed")]
    elif which == "gpus":
        gpus = draw(st.one_of(st.floats(-1e6, -0.01), _nonint_floats.map(lambda f: f + 1)))
        case.spec["resources"] = {"cpus": 1, "gpus": gpus}
        case.expect = [(SPEC, r"resources\.gpus")]
    else:
        case.spec["resources"] = {"cpus": 0, "gpus": 0}
        case.expect = [(SPEC, "resources")]
    case.label = which
    return case


@st.composite
def cyclic_include(draw: st.DrawFn) -> Case:
    """space.yaml -> inc0 -> ... -> inc{k-1} -> back into the chain (or to space.yaml itself)."""
    case = Case("cyclic_include")
    k = draw(st.integers(1, 5))
    target = draw(st.integers(-1, k - 1))  # -1: back to space.yaml
    names = [f"inc{i}.yaml" for i in range(k)]
    case.space["include"] = [COMMON, names[0]] if draw(st.booleans()) else [names[0]]
    for i, name in enumerate(names):
        nxt = names[i + 1] if i + 1 < k else (SPACE if target < 0 else names[target])
        includes = [COMMON, nxt] if draw(st.booleans()) else [nxt]
        case.raw[name] = _dump_yaml({"include": includes, "params": {f"p{i}": i}})
    case.expect = [(names[-1], r"include\[\d\]")]
    case.label = f"{k} files, back to {'space.yaml' if target < 0 else names[target]}"
    return case


@st.composite
def unknown_conditional(draw: st.DrawFn) -> Case:
    """``when``/``per`` naming a param that does not exist, a value it never takes, or a cycle."""
    case = Case("unknown_conditional")
    which = draw(st.sampled_from(["when_unknown", "per_unknown", "when_never", "when_out_of_range", "cycle"]))
    unknown = draw(_identifiers.filter(lambda s: s not in PARAM_NAMES))
    if which == "when_unknown":
        _param(case, "momentum")["when"] = {unknown: draw(st.one_of(_letters, st.integers()))}
        case.expect = [(SPACE, rf"params\.momentum\.when\.{unknown}")]
    elif which == "per_unknown":
        _param(case, "width")["per"] = unknown
        case.expect = [(SPACE, r"params\.width\.per")]
    elif which == "when_never":
        _param(case, "momentum")["when"] = {"opt": draw(_letters.filter(lambda s: s not in ("sgd", "adam")))}
        case.expect = [(SPACE, r"params\.momentum\.when\.opt")]
    elif which == "when_out_of_range":
        value = draw(st.one_of(st.floats(5.01, 1e300), st.floats(-1e300, -5.01)))
        case.space["params"]["y"] = {"float": [0.0, 1.0], "when": {"x": value}}
        case.expect = [(SPACE, r"params\.y\.when\.x")]
    else:
        _param(case, "x")["when"] = {"lr": 0.01}
        _param(case, "lr")["when"] = {"x": 1.0}
        case.expect = [(SPACE, r"params\.(x|lr)")]
    case.label = which
    return case


@st.composite
def empty_choice(draw: st.DrawFn) -> Case:
    """Empty lists where at least one value is needed."""
    case = Case("empty_choice")
    which = draw(st.sampled_from(["choice", "when", "common_choice", "metrics", "variant_choice"]))
    if which == "choice":
        _param(case, "opt")["choice"] = []
        case.expect = [(SPACE, r"params\.opt\.choice")]
    elif which == "when":
        _param(case, "momentum")["when"] = {"opt": []}
        case.expect = [(SPACE, r"params\.momentum\.when\.opt")]
    elif which == "common_choice":
        name = draw(_identifiers.filter(lambda s: s not in PARAM_NAMES))
        case.common["params"][name] = {"choice": []}
        case.expect = [(COMMON, rf"params\.{name}\.choice")]
    elif which == "metrics":
        del case.spec["metric"], case.spec["direction"]
        case.spec["metrics"], case.spec["directions"] = [], []
        case.expect = [(SPEC, "metrics")]
    else:
        case.space["params"]["act"] = [{"choice": [], "when": {"opt": "sgd"}},
                                       {"choice": ["relu"], "when": {"opt": "adam"}}]
        case.expect = [(SPACE, r"params\.act\[0\]\.choice")]
    case.label = which
    return case


@st.composite
def huge_value(draw: st.DrawFn) -> Case:
    """Numbers beyond any sane (or representable) range, very long strings, deep nesting."""
    case = Case("huge_value")
    which = draw(st.sampled_from(["n_trials", "seed", "timeout", "trial_timeout", "cpus", "float_wide", "float_huge",
                                  "int_huge", "tiny_step", "long_name", "long_param", "deep_value", "per_count",
                                  "concurrency", "huge_step"]))
    if which == "n_trials":
        case.spec["n_trials"] = draw(st.one_of(st.just(10**12), st.integers(10**7 + 1, 10**400)))
        case.expect = [(SPEC, "n_trials")]
    elif which == "concurrency":
        case.spec["concurrency"] = draw(st.integers(100_001, 10**400))
        case.expect = [(SPEC, "concurrency")]
    elif which == "seed":
        case.spec["seed"] = draw(st.integers(2**32, 10**400))
        case.expect = [(SPEC, "seed")]
    elif which in ("timeout", "trial_timeout"):
        case.spec[which] = draw(st.one_of(st.floats(367 * 86400.0, 1e308), st.integers(10**8, 10**400),
                                          st.just(math.inf), st.integers(10**8, 10**30).map(lambda n: f"{n}h")))
        case.expect = [(SPEC, which)]
    elif which == "cpus":
        cpus = draw(st.one_of(st.integers(4097, 10**400), st.floats(4097.0, 1e308), st.just(math.inf)))
        case.spec["resources"] = {"cpus": cpus}
        case.expect = [(SPEC, r"resources\.cpus")]
    elif which == "float_wide":
        _param(case, "x")["float"] = [-draw(st.floats(1e308, 1.7e308)), draw(st.floats(1e308, 1.7e308))]
        case.expect = [(SPACE, r"params\.x\.float")]
    elif which == "float_huge":
        _param(case, "x")["float"] = [0.0, draw(st.one_of(st.integers(10**309, 10**400), st.just(math.inf)))]
        case.expect = [(SPACE, r"params\.x\.float")]
    elif which == "int_huge":
        _param(case, "n")["int"] = [1, draw(st.integers(2**53 + 1, 10**400))]
        case.expect = [(SPACE, r"params\.n\.int")]
    elif which == "tiny_step":
        _param(case, "x")["step"] = draw(st.floats(5e-324, 1e-12))
        case.expect = [(SPACE, r"params\.x\.step")]
    elif which == "huge_step":
        _param(case, "x")["step"] = draw(st.integers(10**309, 10**400))
        case.expect = [(SPACE, r"params\.x\.step")]
    elif which == "long_name":
        case.spec["name"] = "n" * draw(st.integers(129, 20_000))
        case.expect = [(SPEC, "name")]
    elif which == "long_param":
        name = "p" * draw(st.integers(101, 5_000))
        case.space["params"][name] = 1
        case.expect = [(SPACE, rf"params\.{name}")]
    elif which == "deep_value":
        depth = draw(st.integers(33, 3_000))
        case.raw[SPACE] = _dump_yaml(BASE_SPACE)[:-1] + b"\n" + b"  deep: " + b"[" * depth + b"]" * depth + b"\n"
        case.expect = [(SPACE, r"params\.deep(\[0\])*"), (SPACE, "<file>")]
    else:
        _param(case, "n")["int"] = [1, draw(st.integers(1025, 2**53))]
        case.expect = [(SPACE, r"params\.width\.per")]
    case.label = which
    return case


_BAD_BYTES = [b"\xff", b"\xfe\xff", b"\xc3\x28", b"\x80", b"\xe2\x82", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80",
              b"\xc0\xaf"]


@st.composite
def non_utf8(draw: st.DrawFn) -> Case:
    """Bytes that are not UTF-8 anywhere in one of the three files (or the file in another encoding)."""
    case = Case("non_utf8")
    name = draw(st.sampled_from([SPEC, SPACE, COMMON]))
    content = case.files()[name]
    how = draw(st.sampled_from(["insert", "latin-1", "utf-16", "cp1252"]))
    if how == "insert":
        at = draw(st.integers(0, len(content)))
        content = content[:at] + draw(st.sampled_from(_BAD_BYTES)) + content[at:]
    else:
        text = content.decode() + f"# {draw(st.sampled_from(['café', 'naïve', 'Ölçü', 'façade']))}\n"
        content = text.encode(how)
    case.raw[name] = content
    case.expect = [(name, "<file>")]
    case.label = f"{how} in {name}"
    return case


@st.composite
def yaml_bomb(draw: st.DrawFn) -> Case:
    """Billion-laughs alias expansion (or merge keys) in one of the files."""
    case = Case("yaml_bomb")
    name = draw(st.sampled_from([SPEC, SPACE, COMMON]))
    levels, width = draw(st.integers(2, 9)), draw(st.integers(2, 9))
    lines = [f"lol0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    where = draw(st.sampled_from(["top", "end", "merge"]))
    body = case.files()[name].decode()
    if where == "top":
        text = "\n".join(lines) + "\n" + body
    elif where == "end":
        text = body + "\n".join(lines) + "\n"
    else:
        text = "defaults: &d {n_trials: 3}\n<<: *d\n" + body
    case.raw[name] = text.encode()
    case.expect = [(name, r"line \d+")]
    case.label = f"{where} {levels}x{width} in {name}"
    return case


@st.composite
def combo(draw: st.DrawFn) -> Case:
    """Two or three spec keys broken at once: the error names one of them."""
    case = Case("combo")
    keys = draw(st.lists(st.sampled_from(sorted(set(_WRONG_SPEC_VALUES) - {"resources"})), min_size=2, max_size=3,
                         unique=True))
    for key in keys:
        _set(case.spec, key, draw(_WRONG_SPEC_VALUES[key]))
    if draw(st.booleans()):
        _param(case, "x")["float"] = [5.0, -5.0]
        case.expect.append((SPACE, r"params\.x\.float"))
    if draw(st.booleans()):  # unknown keys are reported first
        extra = draw(_any_text.filter(lambda s: s not in TOP_LEVEL and s != "<<" and s.strip() == s))
        case.spec[extra] = 1
        case.expect.append((SPEC, re.escape(extra)))
    case.expect += [(SPEC, re.escape(k)) for k in keys]
    case.label = "+".join(keys)
    return case


@st.composite
def unknown_key(draw: st.DrawFn) -> Case:
    """A key nobody defined, in the spec or the space, with any characters (line breaks included)."""
    case = Case("unknown_key")
    key = draw(_any_text.filter(lambda s: s not in TOP_LEVEL | {"include", "params"} and s != "<<" and s.strip() == s))
    if draw(st.booleans()):
        case.spec[key] = draw(st.one_of(st.integers(), _letters))
        case.expect = [(SPEC, re.escape(key))]
    else:
        case.space[key] = 1
        case.expect = [(SPACE, re.escape(key))]
    case.label = repr(key)
    return case


@st.composite
def duplicate_key(draw: st.DrawFn) -> Case:
    """A key written twice in one mapping, which YAML alone would resolve silently (the last wins)."""
    case = Case("duplicate_key")
    name = draw(st.sampled_from([SPEC, SPACE, COMMON]))
    body = case.files()[name].decode()
    if name == SPEC:
        key = draw(st.sampled_from(sorted(BASE_SPEC)))
        text = body + f"{key}: {json.dumps(draw(st.one_of(st.integers(0, 9), _letters)))}\n"
    else:  # params is the last mapping of both space files, in block style
        key = draw(st.sampled_from(sorted(BASE_SPACE["params"] if name == SPACE else BASE_COMMON["params"])))
        text = body + f"  {key}: {draw(st.integers(0, 9))}\n"
    case.raw[name] = text.encode()
    case.expect = [(name, r"line \d+")]
    case.label = f"{key} twice in {name}"
    return case


STRATEGIES: dict[str, st.SearchStrategy[Case]] = {
    "wrong_type": wrong_type(), "missing_key": missing_key(), "unknown_plugin": unknown_plugin(),
    "bad_range": bad_range(), "cyclic_include": cyclic_include(), "unknown_conditional": unknown_conditional(),
    "empty_choice": empty_choice(), "huge_value": huge_value(), "non_utf8": non_utf8(), "yaml_bomb": yaml_bomb(),
    "unknown_key": unknown_key(), "duplicate_key": duplicate_key(), "combo": combo(),
}
# Per category: 45 gives about 585 cases in about 15 s on two busy cores; raise it for a deeper hunt.
EXAMPLES = int(os.environ.get("TUNER_BAD_INPUT_EXAMPLES", "45"))
MIN_CASES = 20  # a category that ran fewer was not really exercised


# --------------------------------------------------------------------------- the checks


def _check_error(case: Case, folder: Path, error: SpecError) -> str:
    """The error is tuner's, one line, `file: key.path: problem; fix`, naming the broken file and key."""
    message = str(error)
    assert len(message.splitlines()) == 1, f"{case.label}: not one line: {message!r}"
    assert error.fix, f"{case.label}: no fix in {message!r}"
    assert message == " ".join(f"{error.source}: {error.path}: {error.problem}; {error.fix}".splitlines()), message
    named = [(f, k) for f, k in case.expect
             if Path(error.source).resolve() == (folder / f).resolve() and re.fullmatch(k, error.path, re.DOTALL)]
    assert named, f"{case.category} ({case.label}): {message[:300]!r} names none of {case.expect}"
    return message


def _validate_in_process(case: Case, folder: Path) -> str:
    spec = case.write(folder)
    with pytest.raises(SpecError) as info:  # any other exception type propagates and fails the test
        validate(str(spec), {})
    return _check_error(case, folder, info.value)


COUNTS: dict[str, int] = {}


@pytest.fixture(scope="module", autouse=True)
def _report_counts() -> Iterator[None]:
    """Print and record how many generated cases ran, whatever the outcome."""
    yield
    total = sum(v for k, v in COUNTS.items() if k != "cli_sample")
    print(f"\nbad input: {total} generated cases in-process, {COUNTS.get('cli_sample', 0)} through the CLI: "
          + ", ".join(f"{k} {v}" for k, v in COUNTS.items()))
    out = ROOT / "test-artifacts"
    out.mkdir(exist_ok=True)
    (out / "bad_input_counts.json").write_text(json.dumps(
        {"in_process": {k: v for k, v in COUNTS.items() if k != "cli_sample"}, "in_process_total": total,
         "cli_sample": COUNTS.get("cli_sample", 0)}, indent=2) + "\n")


@pytest.mark.parametrize("category", list(STRATEGIES))
def test_generated_broken_inputs_give_one_line_spec_errors(category: str, tmp_path: Path) -> None:
    """Each generated case raises SpecError naming its file and key, in the message format users rely on."""
    ran = 0

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                                     HealthCheck.large_base_example])
    @given(case=STRATEGIES[category])
    def check(case: Case) -> None:
        nonlocal ran
        folder = Path(tempfile.mkdtemp(dir=tmp_path))
        try:
            _validate_in_process(case, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        ran += 1

    check()
    COUNTS[category] = ran
    print(f"\n{category}: {ran} generated cases")
    assert ran >= MIN_CASES, f"only {ran} {category} cases ran"


# --------------------------------------------------------------------------- the real CLI

def _sample() -> list[Case]:
    """A fixed sample, one or two per category, built like the generated ones."""
    def spec(label: str, key: str, value: Any, where: str | None = None) -> Case:
        c = Case("cli", label=label)
        _set(c.spec, key, value)
        c.expect = [(SPEC, where or re.escape(key))]
        return c

    def space(label: str, mutate: Callable[[Case], None], key: str, file: str = SPACE) -> Case:
        c = Case("cli", label=label)
        mutate(c)
        c.expect = [(file, key)]
        return c

    def raw(label: str, name: str, content: bytes, key: str) -> Case:
        c = Case("cli", label=label)
        c.raw[name] = content
        c.expect = [(name, key)]
        return c

    base = Case("cli")
    bomb = b"a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    cycle = Case("cli", label="cyclic include")
    cycle.space["include"] = ["a.yaml"]
    cycle.raw["a.yaml"] = _dump_yaml({"include": ["b.yaml"], "params": {}})
    cycle.raw["b.yaml"] = _dump_yaml({"include": [COMMON, "a.yaml"], "params": {}})
    cycle.expect = [("b.yaml", r"include\[1\]")]
    return [
        spec("n_trials wrong type", "n_trials", "many"),
        spec("n_trials 10**12", "n_trials", 10**12),
        spec("timeout 10**400", "timeout", 10**400),
        spec("unknown sampler", "sampler", "annealing"),
        spec("unknown pruner", "pruner", {"name": "sometimes"}, r"pruner\.name"),
        space("missing params", lambda c: c.space.pop("params"), "params"),
        space("inverted float", lambda c: _param(c, "x").update({"float": [5.0, -5.0]}), r"params\.x\.float"),
        space("log from 0", lambda c: _param(c, "lr").update({"float": [0.0, 1.0]}), r"params\.lr"),
        space("when on unknown", lambda c: _param(c, "momentum").update({"when": {"optimiser": "sgd"}}),
              r"params\.momentum\.when\.optimiser"),
        space("empty choice", lambda c: _param(c, "opt").update({"choice": []}), r"params\.opt\.choice"),
        space("float 1e308 wide", lambda c: _param(c, "x").update({"float": [-1e308, 1e308]}), r"params\.x\.float"),
        cycle,
        raw("non-UTF-8 spec", SPEC, base.files()[SPEC].replace(b"bad-input", b"bad-\xff\xfeinput"), "<file>"),
        raw("YAML bomb in include", COMMON, bomb + base.files()[COMMON], r"line \d+"),
        raw("n_trials twice", SPEC, base.files()[SPEC] + b"n_trials: 500\n", r"line \d+"),
        Case("cli", label="--set n_trials of 5000 digits", flags=["--set", "n_trials=" + "9" * 5000],
             expect=[(SPEC, "n_trials")]),
        raw("5 MB space", SPACE, base.files()[SPACE] + b"#" * (5 * 1024 * 1024) + b"\n", "<file>"),
        raw("deep nesting", SPEC, b"name: " + b"[" * 5000 + b"]" * 5000 + b"\n", "<file>"),
    ]


def _snapshot(db: Path) -> dict[str, Any]:
    """What 'untouched' means: the full SQL dump, the study list, the trials, and the files' bytes."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        dump = "\n".join(conn.iterdump())
        studies = conn.execute("SELECT study_id, study_name FROM studies ORDER BY study_id").fetchall()
        trials = conn.execute(
            "SELECT t.number, t.state, v.value, p.param_name, p.param_value FROM trials t "
            "LEFT JOIN trial_values v ON v.trial_id = t.trial_id LEFT JOIN trial_params p ON p.trial_id = t.trial_id "
            "ORDER BY t.number, p.param_name").fetchall()
    # The -shm file is SQLite's shared-memory index, rewritten by every reader (this one too): not data.
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
             for p in (db, db.with_name(db.name + "-wal")) if p.exists()}
    return {"studies": studies, "trials": trials, "dump_sha256": hashlib.sha256(dump.encode()).hexdigest(),
            "files": files}


@pytest.fixture(scope="module")
def existing_study(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A SQLite storage holding a finished tuner study named like the broken specs."""
    import tuner
    from tests import objectives
    from tuner import storage as tuner_storage

    db = tmp_path_factory.mktemp("existing") / "tuner.db"
    url = f"sqlite:///{db}"
    spec = {"name": STUDY, "search_space": {"params": {"x": {"float": [-5.0, 5.0]}}}, "n_trials": 3,
            "concurrency": 1, "pruner": "none", "seed": 0}
    study = tuner.run(spec, objectives.quadratic, storage=url)
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE"] * 3
    for key in [k for k in tuner_storage._CACHE if str(db) in k[0]]:  # from here on only the CLI touches it
        tuner_storage._CACHE.pop(key).engine.dispose()
    return url, db


def test_cli_sample_exits_2_with_one_line_and_leaves_the_study_alone(existing_study: tuple[str, Path],
                                                                     tmp_path: Path) -> None:
    """The real `tuner run` on broken specs: exit 2, one stderr line naming file and key, storage unchanged."""
    url, db = existing_study
    before = _snapshot(db)
    assert before["studies"] == [(1, STUDY)] and len({row[0] for row in before["trials"]}) == 3
    env = {"RAY_USAGE_STATS_ENABLED": "0", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    cases = _sample()
    for i, case in enumerate(cases):
        folder = tmp_path / f"case{i}"
        folder.mkdir()
        spec = case.write(folder)
        out = subprocess.run([sys.executable, "-m", "tuner.cli", "run", str(spec), "--storage", url, *case.flags],
                             cwd=ROOT, capture_output=True, text=True, timeout=120, env=env, check=False)
        lines = out.stderr.splitlines()
        assert out.returncode == 2, f"{case.label}: exit {out.returncode}: {out.stderr[-2000:]}"
        assert len(lines) == 1 and lines[0].startswith("error: "), f"{case.label}: {out.stderr[-2000:]!r}"
        assert "Traceback" not in out.stderr and out.stdout == "", case.label
        message = lines[0][len("error: "):]
        assert any(message.startswith(str((folder / f).resolve()) + ": ") and
                   re.match(k + ": ", message[len(str((folder / f).resolve())) + 2:]) for f, k in case.expect), \
            f"{case.label}: {message[:300]!r} names none of {case.expect}"
        assert "; " in message, f"{case.label}: no fix: {message[:300]!r}"
        assert _snapshot(db) == before, f"{case.label}: the storage changed"
    COUNTS["cli_sample"] = len(cases)
    print(f"\ncli sample: {len(cases)} broken specs through `tuner run`, storage unchanged")
