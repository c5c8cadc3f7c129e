"""Tests of the search-space language (tuner/space.py): parsing, errors, suggest, grid, to_dict."""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from optuna.trial import FrozenTrial

from tests.conftest import ROOT
from tuner.exceptions import SpaceError
from tuner.space import MAX_GRID_POINTS, SEARCH_SPACES_DIR, SearchSpace

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p.name for p in (ROOT / "search_spaces").glob("*.yaml"))
HYPOTHESIS = settings(
    max_examples=60, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(autouse=True)
def _quiet_optuna() -> Iterator[None]:
    """Optuna logs one INFO line per trial; keep test output readable, then restore."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    optuna.logging.set_verbosity(level)


def space(params: dict[str, Any], **top: Any) -> SearchSpace:
    return SearchSpace.from_mapping({"params": params, **top})


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def sample(sp: SearchSpace, sampler: optuna.samplers.BaseSampler, n: int) -> list[tuple[dict, FrozenTrial]]:
    """Run ``n`` trials through a real in-memory study; returns (user dict, frozen trial) pairs."""
    study = optuna.create_study(sampler=sampler)
    out = []
    for i in range(n):
        trial = study.ask()
        params = sp.suggest(trial)
        study.tell(trial, float(i % 7))
        out.append((params, study.trials[-1]))
    return out


@contextlib.contextmanager
def no_space_warnings() -> Iterator[None]:
    """Turn the Optuna warnings that a badly translated space causes into errors.

    Optuna warns when a step does not divide the range, when a name is suggested with two
    distributions, or when a fixed/enqueued value lies outside its distribution.
    """
    with warnings.catch_warnings():
        for text in ("not divisible", "Inconsistent parameter values", "out of range"):
            warnings.filterwarnings("error", message=f".*{text}")
        yield


def assert_one_line_error(exc: SpaceError, *parts: str) -> None:
    message = str(exc)
    assert "\n" not in message, message
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


# --------------------------------------------------------------------------- shipped files


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_file_parses_and_round_trips(name: str) -> None:
    sp = SearchSpace.load(ROOT / "search_spaces" / name)
    assert len(sp) > 0
    canonical = sp.to_dict()
    json.dumps(canonical, allow_nan=False)
    assert SearchSpace.from_mapping(canonical) == sp
    assert SearchSpace.from_mapping(canonical).to_dict() == canonical
    assert (ROOT / "search_spaces" / name).read_text().startswith("#"), "each file starts with a comment"


def test_shipped_files_are_the_expected_set() -> None:
    assert {"optimizers.yaml", "regularization.yaml", "schedules.yaml", "mlp.yaml"} <= set(SHIPPED)
    assert SEARCH_SPACES_DIR.resolve() == ROOT / "search_spaces"  # tuner/search_spaces links to them


def test_shipped_param_names_are_the_training_loop_contract() -> None:
    names = {n: set(SearchSpace.load(ROOT / "search_spaces" / n).names) for n in SHIPPED}
    assert names["optimizers.yaml"] == {"optimizer", "lr", "momentum", "nesterov"}
    assert names["regularization.yaml"] == {"dropout", "weight_decay", "l1", "label_smoothing", "grad_clip"}
    assert names["schedules.yaml"] == {"schedule", "warmup_frac", "step_gamma", "step_epochs"}
    assert names["mlp.yaml"] == (names["optimizers.yaml"] | names["regularization.yaml"] | names["schedules.yaml"]
                                 | {"n_layers", "width", "activation", "batch_norm", "init", "batch_size", "epochs"})
    d = SearchSpace.load(ROOT / "search_spaces" / "mlp.yaml").to_dict()["params"]
    assert d["width"] == {"int": [32, 512], "log": True, "per": "n_layers"}
    assert d["epochs"] == {"value": 20}
    assert d["lr"] == [
        {"float": [1.0e-4, 1.0e-2], "log": True, "when": {"optimizer": ["adam", "adamw"]}},
        {"float": [1.0e-3, 0.3], "log": True, "when": {"optimizer": ["sgd"]}},
    ]
    assert d["warmup_frac"]["when"] == {"schedule": ["constant", "cosine", "step"]}
    assert d["grad_clip"] == {"choice": [None, 1.0, 5.0]}


@pytest.mark.parametrize("sampler", [
    optuna.samplers.RandomSampler(seed=3),
    optuna.samplers.TPESampler(seed=3, n_startup_trials=5),
    optuna.samplers.TPESampler(seed=4, n_startup_trials=5, multivariate=True, group=True),
], ids=["random", "tpe", "tpe-multivariate-group"])
def test_suggest_mlp_through_real_study(sampler: optuna.samplers.BaseSampler) -> None:
    sp = SearchSpace.load(ROOT / "search_spaces" / "mlp.yaml")
    with no_space_warnings():
        runs = sample(sp, sampler, 25)
    seen_optimizers = set()
    for params, trial in runs:
        assert sp.contains(params), params
        assert sp.params_from_optuna(trial.params) == params
        assert sp.to_optuna_params(params) == trial.params
        assert sp.distributions_for(params) == trial.distributions
        assert params["epochs"] == 20 and "epochs" not in trial.params
        assert len(params["width"]) == params["n_layers"]
        assert all(isinstance(w, int) and 32 <= w <= 512 for w in params["width"])
        assert [k for k in trial.params if k.startswith("width")] == [f"width.{i}" for i in range(params["n_layers"])]
        sgd = params["optimizer"] == "sgd"
        assert ("momentum" in params) == sgd and ("nesterov" in params) == sgd
        lr_name = "lr|optimizer=sgd" if sgd else "lr|optimizer=adam/adamw"
        assert [k for k in trial.params if k.startswith("lr")] == [lr_name]
        low, high = (1e-3, 0.3) if sgd else (1e-4, 1e-2)
        assert low <= params["lr"] <= high
        assert ("warmup_frac" in params) == (params["schedule"] != "onecycle")
        assert ("step_gamma" in params) == ("step_epochs" in params) == (params["schedule"] == "step")
        seen_optimizers.add(params["optimizer"])
    assert seen_optimizers == {"sgd", "adam", "adamw"}


# --------------------------------------------------------------------------- errors


ERROR_CASES = [
    # (id, lines of the file, substrings the one-line message must contain)
    ("yaml-syntax", ["params: {a: [1, 2}"], ["line 1", "invalid YAML"]),
    ("root-not-mapping", ["- a", "- b"], ["<root>", "must be a mapping"]),
    ("unknown-top-key", ["parms: {}"], ["parms: unknown top-level key", "did you mean 'params'"]),
    ("params-missing", ["version: 1"], ["params: missing"]),
    ("params-not-mapping", ["params: [1, 2]"], ["params: expected a mapping"]),
    ("bad-version", ["version: 2", "params: {}"], ["version: unsupported version 2"]),
    ("unknown-param-key", ["params:", "  lr: {float: [0.1, 1.0], lgo: true}"],
     ["params.lr.lgo: unknown key", "did you mean 'log'", "allowed: float, int, choice, value, log, step, when, per"]),
    ("no-kind", ["params:", "  lr: {log: true}"], ["params.lr: no kind given", "float: [low, high]"]),
    ("two-kinds", ["params:", "  lr: {float: [0.1, 1.0], int: [1, 2]}"], ["params.lr: both float and int"]),
    ("log-on-choice", ["params:", "  act: {choice: [a, b], log: true}"],
     ["params.act.log: log does not apply to choice"]),
    ("empty-choice", ["params:", "  act: {choice: []}"], ["params.act.choice: empty choice list"]),
    ("choice-not-list", ["params:", "  act: {choice: relu}"], ["params.act.choice: expected a list"]),
    ("duplicate-choice", ["params:", "  act: {choice: [1, true]}"], ["params.act.choice[1]", "Optuna cannot tell"]),
    ("non-numeric-bound", ["params:", "  lr: {float: [abc, 1.0]}"], ["params.lr.float: low must be a number"]),
    ("yaml-1e-5-is-text", ["params:", "  lr: {float: [1e-5, 1.0]}"],
     ["params.lr.float", "low must be a number", "1.0e-5"]),
    ("unsigned-exponent-is-text", ["params:", "  lr: {float: [0.0, 1.0e3]}"],
     ["params.lr.float: high must be a number", "signed exponent"]),
    ("int-bound-float", ["params:", "  n: {int: [1.5, 3]}"], ["params.n.int: low must be an integer"]),
    ("bounds-not-pair", ["params:", "  n: {int: [1, 2, 3]}"], ["params.n.int: expected [low, high]"]),
    ("inverted", ["params:", "  lr: {float: [1.0, 0.5]}"], ["params.lr.float: low 1.0 > high 0.5"]),
    ("nan", ["params:", "  lr: {float: [.nan, 1.0]}"], ["params.lr.float: low is nan"]),
    ("inf", ["params:", "  lr: {float: [0.0, .inf]}"], ["params.lr.float: high is inf"]),
    ("overflow-float", ["params:", "  lr: {float: [0.0, 1.0e+999]}"], ["params.lr.float: high is inf"]),
    ("overflow-int", ["params:", "  n: {int: [0, 123456789012345678901234567890]}"],
     ["params.n.int: high", "too large"]),
    ("too-wide", ["params:", "  x: {float: [-1.0e+308, 1.7e+308]}"], ["params.x.float: the range is too wide"]),
    ("log-low-zero", ["params:", "  lr: {float: [0.0, 1.0], log: true}"],
     ["params.lr: low must be > 0 when log: true"]),
    ("int-log-low-zero", ["params:", "  n: {int: [0, 8], log: true}"], ["params.n: low must be >= 1 when log: true"]),
    ("log-not-bool", ["params:", "  lr: {float: [0.1, 1.0], log: yes please}"],
     ["params.lr.log: expected true or false"]),
    ("step-with-log", ["params:", "  lr: {float: [0.1, 1.0], log: true, step: 0.1}"],
     ["params.lr.step: step cannot be combined with log"]),
    ("step-negative", ["params:", "  x: {float: [0.0, 1.0], step: -0.1}"], ["params.x.step: step must be positive"]),
    ("step-long-decimals", ["params:", "  x: {float: [0.8495084624623044, 1.6], step: 0.3}"],
     ["params.x.step: low 0.8495084624623044 + k * step 0.3 cannot end exactly", "fewer decimals"]),
    ("step-tiny", ["params:", "  x: {float: [0.0, 1.0], step: 1.0e-300}"], ["params.x.step", "more than"]),
    # a step past the range made a constant of the param, with a note only; a fixed value says so
    ("step-wider-than-range", ["params:", "  x: {float: [-3, 3], step: 10}"],
     ["params.x.step: step 10.0 is wider than the range [-3.0, 3.0], so its grid holds one value, -3.0",
      "use a smaller step or a wider range, or write {value: -3.0} for a fixed value"]),
    ("int-step-wider-than-range", ["params:", "  n: {int: [1, 4], step: 5}"],
     ["params.n.step: step 5 is wider than the range [1, 4], so its grid holds one value, 1"]),
    ("unknown-when-ref", ["params:", "  optimizer: {choice: [sgd]}", "  m: {float: [0.1, 0.9], when: {optimzer: sgd}}"],
     ["params.m.when.optimzer: unknown param 'optimzer'", "did you mean 'optimizer'"]),
    ("when-never-holds",
     ["params:", "  optimizer: {choice: [sgd, adam]}", "  m: {float: [0.1, 0.9], when: {optimizer: sgdd}}"],
     ["params.m.when.optimizer: optimizer is never sgdd", "one of sgd, adam"]),
    # a sampled continuous float is never exactly 1: the condition was accepted and never fired
    ("when-on-continuous-float", ["params:", "  x: {float: [-3, 3]}", "  y: {float: [0, 1], when: {x: 1}}"],
     ["params.y.when.x: x is a continuous float (a number in [-3.0, 3.0]), which is never exactly 1, so the "
      "condition never holds", "give x a step or make it a choice"]),
    ("when-on-continuous-float-variant",
     ["params:", "  o: {choice: [a, b]}", "  x:", "    - {float: [0, 3], when: {o: a}}", "    - {choice: [5, 6], when: {o: b}}",
      "  y: {float: [0, 1], when: {x: 1}}"], ["params.y.when.x: x is a continuous float"]),
    ("when-not-mapping", ["params:", "  m: {float: [0.1, 0.9], when: optimizer}"],
     ["params.m.when: expected a non-empty mapping"]),
    ("when-empty-list", ["params:", "  o: {choice: [a]}", "  m: {float: [0.1, 0.9], when: {o: []}}"],
     ["params.m.when.o: an empty list never holds"]),
    ("when-on-per-list",
     ["params:", "  n: {int: [1, 2]}", "  w: {int: [1, 4], per: n}", "  x: {value: 1, when: {w: 2}}"],
     ["params.x.when.w: w is a per-layer list"]),
    ("unknown-per-ref", ["params:", "  w: {int: [1, 4], per: n_layer}"], ["params.w.per: unknown param 'n_layer'"]),
    ("per-on-float", ["params:", "  n: {float: [1.0, 3.0]}", "  w: {int: [1, 4], per: n}"],
     ["params.w.per: n is not an int param"]),
    ("per-negative", ["params:", "  n: {int: [-1, 3]}", "  w: {int: [1, 4], per: n}"],
     ["params.w.per", "not a count"]),
    ("per-too-many", ["params:", "  n: {int: [1, 5000]}", "  w: {int: [1, 4], per: n}"],
     ["params.w.per", "not a count in [0, 1024]"]),
    ("cycle", ["params:", "  a: {choice: [1, 2], when: {b: 1}}", "  b: {choice: [1, 2], when: {c: 1}}",
               "  c: {choice: [1, 2], when: {a: 2}}"], ["params.a: dependency cycle a -> b -> c -> a"]),
    ("self-cycle", ["params:", "  a: {choice: [1, 2], when: {a: 1}}"], ["params.a: dependency cycle a -> a"]),
    ("variant-without-when",
     ["params:", "  o: {choice: [a, b]}", "  lr:", "    - {float: [0.1, 1.0], when: {o: a}}",
      "    - {float: [0.2, 2.0]}"],
     ["params.lr[1]: a variant needs `when`"]),
    ("variant-not-mapping",
     ["params:", "  o: {choice: [a, b]}", "  lr:", "    - {float: [0.1, 1.0], when: {o: a}}", "    - 3"],
     ["params.lr[1]: expected a variant mapping"]),
    ("variants-overlap",
     ["params:", "  o: {choice: [a, b]}", "  lr:", "    - {float: [0.1, 1.0], when: {o: [a, b]}}",
      "    - {float: [0.2, 2.0], when: {o: b}}"],
     ["params.lr: variants [0]", "can both be active"]),
    ("bad-name", ["params:", "  a.b: 1"], ["params.a.b: invalid param name"]),
    ("bool-name", ["params:", "  yes: 1"], ["params: param name True is not a string", "quote the name"]),
    ("date-value", ["params:", "  d: 2020-01-01"], ["params.d: unsupported value type date"]),
    ("include-type", ["include: 3", "params: {}"], ["include: expected a file name"]),
    ("include-missing", ["include: [a_missing_file.yaml]", "params: {}"],
     ["include[0]: file 'a_missing_file.yaml' not found"]),
    ("aliases", ["params:", "  a: &x {choice: [1, 2]}", "  b: *x"], ["line 3", "anchors and aliases"]),
]


@pytest.mark.parametrize(("lines", "parts"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_error_names_file_and_key_path_on_one_line(tmp_path: Path, lines: list[str], parts: list[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "space.yaml", "\n".join(lines) + "\n")
    with pytest.raises(SpaceError) as info:
        SearchSpace.load("space.yaml")
    assert_one_line_error(info.value, "space.yaml: ", *parts)
    assert info.value.source == "space.yaml"


def test_yaml_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    lines.append("params: {x: {value: *a9}}")
    path = write(tmp_path, "bomb.yaml", "\n".join(lines) + "\n")
    with pytest.raises(SpaceError) as info:
        SearchSpace.load(path)
    assert_one_line_error(info.value, "bomb.yaml", "anchors and aliases")


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("params:\n  act: {choice: [caf\u00e9]}\n".encode("latin-1"))
    with pytest.raises(SpaceError) as info:
        SearchSpace.load(path)
    assert_one_line_error(info.value, "latin1.yaml", "not UTF-8", "save the file as UTF-8")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpaceError) as info:
        SearchSpace.load(tmp_path / "nope.yaml")
    assert_one_line_error(info.value, "nope.yaml", "<file>", "no such search-space file")


@pytest.mark.parametrize("data", [None, [1, 2], "params", 3])
def test_from_mapping_rejects_non_mappings(data: Any) -> None:
    with pytest.raises(SpaceError) as info:
        SearchSpace.from_mapping(data, source="studies/s.yaml: search_space")  # type: ignore[arg-type]
    assert_one_line_error(info.value, "studies/s.yaml: search_space: <root>: ")


def test_inline_error_uses_given_source() -> None:
    with pytest.raises(SpaceError) as info:
        SearchSpace.from_mapping({"params": {"lr": {"float": [0.0, 1.0], "log": True}}},
                                 source="studies/a.yaml: search_space")
    assert str(info.value) == ("studies/a.yaml: search_space: params.lr: low must be > 0 when log: true; "
                               "raise low above 0 or drop log")


def test_error_in_included_file_names_that_file(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", "params:\n  lr: {float: [1.0, 0.1]}\n")
    main = write(tmp_path, "main.yaml", "include: base.yaml\nparams: {}\n")
    with pytest.raises(SpaceError) as info:
        SearchSpace.load(main)
    assert_one_line_error(info.value, "base.yaml: params.lr.float: low 1.0 > high 0.1")


# --------------------------------------------------------------------------- includes


def test_include_merges_in_order_and_overrides(tmp_path: Path) -> None:
    write(tmp_path, "parts/a.yaml", "params:\n  x: {int: [1, 3]}\n  y: {choice: [a, b]}\n")
    write(tmp_path, "parts/b.yaml", "include: c.yaml\nparams:\n  y: {choice: [c]}\n  z: 1\n")  # relative to parts/
    write(tmp_path, "parts/c.yaml", "params:\n  w: {float: [0.0, 1.0]}\n")
    main = write(tmp_path, "main.yaml", "include: [parts/a.yaml, parts/b.yaml]\nparams:\n  x: {int: [5, 6]}\n  v: 2\n")
    sp = SearchSpace.load(main)
    assert sp.names == ["x", "y", "w", "z", "v"]  # first definition keeps its place
    d = sp.to_dict()["params"]
    assert d["x"] == {"int": [5, 6]}  # the including file wins
    assert d["y"] == {"choice": ["c"]}  # the later include wins
    assert d["w"] == {"float": [0.0, 1.0]}


def test_include_falls_back_to_shipped_spaces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    main = write(tmp_path, "sub/main.yaml", "include: optimizers.yaml\nparams:\n  momentum: 0.9\n")
    sp = SearchSpace.load(main)
    assert sp.to_dict()["params"]["momentum"] == {"value": 0.9}
    assert sp.suggest(optuna.trial.FixedTrial({"optimizer": "adam", "lr|optimizer=adam/adamw": 1e-3})) == {
        "optimizer": "adam", "lr": 1e-3, "momentum": 0.9}


def test_a_study_spec_of_the_same_name_does_not_hide_a_shipped_space(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # studies/sklearn_gbm.yaml hid search_spaces/sklearn_gbm.yaml from every study written next to
    # the shipped ones: "studies/sklearn_gbm.yaml: name: unknown top-level key".
    from tuner.spec import spec_from_mapping

    monkeypatch.chdir(tmp_path)
    studies = tmp_path / "studies"
    studies.mkdir()
    for name in ("sklearn_gbm.yaml", "mlp_pareto.yaml"):
        (studies / name).write_text((ROOT / "studies" / name).read_text())
    shipped = SearchSpace.load(SEARCH_SPACES_DIR / "sklearn_gbm.yaml")
    by_name = spec_from_mapping({"name": "m", "task": "sklearn", "task_args": {"dataset": "digits"},
                                 "search_space": "sklearn_gbm.yaml"}, source="m.yaml", base_dir=studies)
    assert by_name.search_space == shipped
    included = SearchSpace.from_mapping({"include": ["mlp_pareto.yaml"], "params": {}}, base_dir=studies)
    assert included.names == SearchSpace.load(SEARCH_SPACES_DIR / "mlp_pareto.yaml").names
    # A space of that name next to the spec still comes first.
    write(studies, "own.yaml", "params:\n  k: {choice: [1, 2]}\n")
    write(studies, "sklearn_gbm.yaml", "params:\n  k: {choice: [3, 4]}\n")
    assert SearchSpace.from_mapping({"include": ["sklearn_gbm.yaml"], "params": {}}, base_dir=studies).names == ["k"]


def test_inline_include_resolves_from_base_dir(tmp_path: Path) -> None:
    write(tmp_path, "extra.yaml", "params:\n  k: {choice: [1, 2]}\n")
    sp = SearchSpace.from_mapping({"include": ["extra.yaml"], "params": {}}, base_dir=tmp_path)
    assert sp.names == ["k"]


def test_include_cycle_names_the_chain(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "include: b.yaml\nparams: {x: 1}\n")
    write(tmp_path, "b.yaml", "include: [a.yaml]\nparams: {y: 1}\n")
    with pytest.raises(SpaceError) as info:
        SearchSpace.load(tmp_path / "a.yaml")
    assert_one_line_error(info.value, "b.yaml: include[0]: include cycle ", "a.yaml -> ", "b.yaml -> ", "remove one")
    assert str(info.value).count("a.yaml") == 2  # ... a.yaml -> ... b.yaml -> ... a.yaml


def test_self_include_is_a_cycle(tmp_path: Path) -> None:
    write(tmp_path, "s.yaml", "include: s.yaml\nparams: {}\n")
    with pytest.raises(SpaceError, match="include cycle"):
        SearchSpace.load(tmp_path / "s.yaml")


def test_missing_include_names_including_file_and_path(tmp_path: Path) -> None:
    main = write(tmp_path, "main.yaml", "include: [optimizers.yaml, nowhere/x.yaml]\nparams: {}\n")
    with pytest.raises(SpaceError) as info:
        SearchSpace.load(main)
    assert_one_line_error(info.value, "main.yaml: include[1]: file 'nowhere/x.yaml' not found", "search_spaces")


# --------------------------------------------------------------------------- suggest


COND_SPACE = {
    "optimizer": {"choice": ["sgd", "adam"]},
    "momentum": {"float": [0.5, 0.99], "when": {"optimizer": "sgd"}},
    "n_layers": {"int": [0, 3]},
    "width": {"int": [8, 64], "log": True, "per": "n_layers"},
    "drop": {"float": [0.0, 0.5], "step": 0.1, "per": "n_layers", "when": {"optimizer": ["adam"]}},
    "lr": [
        {"float": [0.01, 0.1], "when": {"optimizer": "sgd"}},
        {"int": [1, 5], "when": {"optimizer": "adam"}},
    ],
    "epochs": 3,
}


@pytest.mark.parametrize("seed", [0, 1])
def test_conditionals_per_and_variants(seed: int) -> None:
    sp = space(COND_SPACE)
    runs = sample(sp, optuna.samplers.RandomSampler(seed=seed), 40)
    layers = set()
    for params, trial in runs:
        assert sp.contains(params)
        sgd = params["optimizer"] == "sgd"
        assert ("momentum" in params) == sgd
        assert ("drop" in params) == (not sgd)
        assert len(params["width"]) == params["n_layers"]
        if not sgd:
            assert len(params["drop"]) == params["n_layers"]
            assert all(any(abs(v - k / 10) < 1e-9 for k in range(6)) for v in params["drop"])
        if sgd:
            assert isinstance(params["lr"], float) and 0.01 <= params["lr"] <= 0.1
            assert "lr|optimizer=sgd" in trial.params
        else:
            assert isinstance(params["lr"], int) and 1 <= params["lr"] <= 5
            assert "lr|optimizer=adam" in trial.params
        assert "lr" not in trial.params and "width" not in trial.params
        layers.add(params["n_layers"])
    assert layers == {0, 1, 2, 3}


def test_fixed_trial_and_enqueue_give_exact_values() -> None:
    sp = space(COND_SPACE)
    fixed = {"optimizer": "adam", "n_layers": 2, "width.0": 8, "width.1": 64, "drop.0": 0.1, "drop.1": 0.5,
             "lr|optimizer=adam": 4}
    expected = {"optimizer": "adam", "n_layers": 2, "width": [8, 64], "drop": [0.1, 0.5], "lr": 4, "epochs": 3}
    assert sp.suggest(optuna.trial.FixedTrial(fixed)) == expected
    study = optuna.create_study()
    study.enqueue_trial(fixed)
    trial = study.ask()
    assert sp.suggest(trial) == expected
    assert trial.params == fixed


def test_count_param_inactive_makes_per_param_inactive() -> None:
    sp = space({"deep": {"choice": [True, False]}, "n": {"int": [1, 2], "when": {"deep": True}},
                "w": {"choice": [1, 2], "per": "n"}})
    assert sp.suggest(optuna.trial.FixedTrial({"deep": False})) == {"deep": False}
    assert sp.suggest(optuna.trial.FixedTrial({"deep": True, "n": 1, "w.0": 2})) == {"deep": True, "n": 1, "w": [2]}


def test_per_accepts_int_choices_and_fixed_counts() -> None:
    sp = space({"n": {"choice": [1, 4]}, "w": {"choice": ["a", "b"], "per": "n"}, "k": 2,
                "v": {"int": [0, 1], "per": "k"}})
    point = sp.suggest(optuna.trial.FixedTrial({"n": 4, "w.0": "a", "w.1": "b", "w.2": "a", "w.3": "a",
                                                "v.0": 1, "v.1": 0}))
    assert point == {"n": 4, "w": ["a", "b", "a", "a"], "k": 2, "v": [1, 0]}
    assert len(sp.grid()) == (2 + 2**4) * 2**2
    with pytest.raises(SpaceError, match="n is not an int param"):
        space({"n": {"choice": [1, "two"]}, "w": {"choice": ["a"], "per": "n"}})


def test_space_pickles_for_remote_workers() -> None:
    import pickle

    sp = SearchSpace.load(ROOT / "search_spaces" / "mlp.yaml")
    clone = pickle.loads(pickle.dumps(sp))
    assert clone == sp and clone.names == sp.names
    fixed = {"optimizer": "sgd", "lr|optimizer=sgd": 0.01, "momentum": 0.9, "nesterov": True}
    assert clone.params_from_optuna(fixed) == sp.params_from_optuna(fixed)


def test_overlapping_variants_raise_at_suggest_time() -> None:
    sp = space({"a": {"choice": ["x", "y"]}, "b": {"choice": ["x", "y"]},
                "v": [{"float": [0.0, 1.0], "when": {"a": "x"}}, {"float": [2.0, 3.0], "when": {"b": "x"}}]})
    assert sp.suggest(optuna.trial.FixedTrial({"a": "x", "b": "y", "v|a=x": 0.5}))["v"] == 0.5
    with pytest.raises(SpaceError) as info:
        sp.suggest(optuna.trial.FixedTrial({"a": "x", "b": "x", "v|a=x": 0.5, "v|b=x": 2.5}))
    assert_one_line_error(info.value, "<inline>: params.v: variants a=x and b=x are both active", "exclusive")
    finite = space({"a": {"choice": ["x", "y"]}, "b": {"choice": ["x", "y"]},
                    "v": [{"choice": [1], "when": {"a": "x"}}, {"choice": [2], "when": {"b": "x"}}]})
    with pytest.raises(SpaceError, match="variants a=x and b=x are both active"):
        finite.grid()


def test_evaluation_order_respects_dependencies_then_declaration() -> None:
    sp = space({"w": {"int": [1, 2], "per": "n"}, "z": 1, "m": {"value": 1, "when": {"o": "a"}},
                "o": {"choice": ["a", "b"]}, "n": {"int": [1, 2]}})
    assert sp.names == ["z", "o", "m", "n", "w"]


def test_when_accepts_bool_and_number_types_strictly() -> None:
    sp = space({"flag": {"choice": [True, False]}, "n": {"choice": [0, 1]},
                "a": {"value": "A", "when": {"flag": True}}, "b": {"value": "B", "when": {"n": 1}}})
    assert sp.suggest(optuna.trial.FixedTrial({"flag": True, "n": 1})) == {"flag": True, "n": 1, "a": "A", "b": "B"}
    assert sp.suggest(optuna.trial.FixedTrial({"flag": False, "n": 0})) == {"flag": False, "n": 0}
    with pytest.raises(SpaceError, match="flag is never 1"):
        space({"flag": {"choice": [True, False]}, "a": {"value": 1, "when": {"flag": 1}}})


def test_contains_rejects_points_outside() -> None:
    sp = space(COND_SPACE)
    good = {"optimizer": "sgd", "momentum": 0.9, "n_layers": 2, "width": [8, 64], "lr": 0.05, "epochs": 3}
    assert sp.contains(good)
    bad = [
        {k: v for k, v in good.items() if k != "momentum"},  # active param missing
        {**good, "drop": [0.1, 0.2]},  # inactive param present
        {**good, "width": [8]},  # per length
        {**good, "width": [8, 65]},  # bound
        {**good, "width": 8},  # not a list
        {**good, "momentum": 1.5},
        {**good, "epochs": 4},  # fixed value
        {k: v for k, v in good.items() if k != "epochs"},
        {**good, "lr": 3},  # the adam variant's value under sgd
        {**good, "n_layers": True},  # bool is not an int
        {**good, "n_layers": 2.0},
        {**good, "extra": 1},
        {**good, "momentum": float("nan")},
        {**good, "momentum": 10**400},
    ]
    for params in bad:
        assert not sp.contains(params), params
    assert not sp.contains([1, 2])  # type: ignore[arg-type]
    adam = {"optimizer": "adam", "n_layers": 1, "width": [9], "drop": [0.30000000000000004], "lr": 2, "epochs": 3}
    assert sp.contains(adam)
    assert not sp.contains({**adam, "drop": [0.25]})  # off the step grid
    with pytest.raises(SpaceError, match=r"not a point of this space: width: .*per n_layers"):
        sp.distributions_for({**good, "width": [8]})


def test_a_partial_point_fixes_the_params_it_gives_in_optunas_names() -> None:
    """What `enqueue:` stores: the given params under the names the trial will suggest (the active
    variant, one per layer), nothing for fixed values, and the sampler draws the rest."""
    sp = space(COND_SPACE)
    assert sp.partial_optuna_params({"optimizer": "adam", "lr": 2}) == {"optimizer": "adam", "lr|optimizer=adam": 2}
    assert sp.partial_optuna_params({"n_layers": 2, "width": [8, 64], "epochs": 3}) == {
        "n_layers": 2, "width.0": 8, "width.1": 64}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(sp.partial_optuna_params({"optimizer": "sgd", "lr": 0.05, "n_layers": 1, "width": [9]}))
    drawn = sp.suggest(study.ask())
    assert {k: drawn[k] for k in ("optimizer", "lr", "n_layers", "width")} == {
        "optimizer": "sgd", "lr": 0.05, "n_layers": 1, "width": [9]}
    assert 0.5 <= drawn["momentum"] <= 0.99  # left to the sampler
    # a value is passed on as the sampler would draw it: 64.0 written for choice 64 reached the
    # objective as a float (nn.Linear(8, 64.0) fails), and lr: 1 and lr: 1.0 were two points
    typed = space({"w": {"choice": [32, 64]}, "lr": {"float": [0.5, 2.0]}, "n": {"int": [1, 4]}})
    flat = typed.partial_optuna_params({"w": 64.0, "lr": 1, "n": 2})
    assert flat == {"w": 64, "lr": 1.0, "n": 2} and [type(v) for v in flat.values()] == [int, float, int]


@pytest.mark.parametrize(("point", "param", "problem"), [
    ({"lr": 2}, "lr", "depends on optimizer"),  # which lr variant is fixed is unknown
    ({"width": [8]}, "width", "depends on n_layers"),
    ({"optimizer": "adam", "momentum": 0.9}, "momentum", "inactive for the values this point gives optimizer='adam'"),
    ({"optimizer": "sgd", "lr": 2}, "lr", "2 is not a number in [0.01, 0.1]"),  # the adam variant's value
    ({"n_layers": 2, "width": [8]}, "width", "expected a list of 2 values (one per n_layers)"),
    ({"n_layers": 1, "width": [65]}, "width", "65 is not an integer in [8, 64] (log)"),
    ({"epochs": 4}, "epochs", "4 given, but the space fixes it at 3"),
    ({"optimizer": "rmsprop"}, "optimizer", "'rmsprop' is not one of sgd, adam"),
    ({"extra": 1}, "extra", "not a param of this search space"),
    ({}, "", "an empty point"),
    ([1], "", "expected a mapping of param values, got a list"),
])
def test_a_partial_point_outside_the_space_says_which_param_and_why(point: Any, param: str, problem: str) -> None:
    found = space(COND_SPACE).partial_point_problem(point)
    assert found is not None and found[0] == param and problem in found[1], found


def test_distributions_for_records_a_point_with_add_trial() -> None:
    sp = space(COND_SPACE)
    point = {"optimizer": "adam", "n_layers": 1, "width": [16], "drop": [0.2], "lr": 2, "epochs": 3}
    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(params=sp.to_optuna_params(point),
                                              distributions=sp.distributions_for(point), value=1.0))
    stored = study.trials[0]
    assert stored.params == {"optimizer": "adam", "n_layers": 1, "width.0": 16, "drop.0": 0.2, "lr|optimizer=adam": 2}
    assert sp.params_from_optuna(stored.params) == point


def test_params_from_optuna_leaves_out_missing_values() -> None:
    sp = space(COND_SPACE)
    assert sp.params_from_optuna({"optimizer": "sgd", "n_layers": 2, "width.0": 9}) == {
        "optimizer": "sgd", "n_layers": 2, "epochs": 3}


# --------------------------------------------------------------------------- grid


def test_grid_exact_points_with_conditionals_and_per() -> None:
    sp = space({
        "opt": {"choice": ["sgd", "adam"]},
        "mom": {"float": [0.5, 0.9], "step": 0.2, "when": {"opt": "sgd"}},
        "n": {"int": [1, 2]},
        "w": {"choice": [8, 16], "per": "n"},
        "act": "relu",
    })
    moms = {"sgd": [{"mom": 0.5}, {"mom": 0.7}, {"mom": 0.9}], "adam": [{}]}
    widths = [{"n": 1, "w.0": 8}, {"n": 1, "w.0": 16},
              {"n": 2, "w.0": 8, "w.1": 8}, {"n": 2, "w.0": 8, "w.1": 16},
              {"n": 2, "w.0": 16, "w.1": 8}, {"n": 2, "w.0": 16, "w.1": 16}]
    expected = [{"opt": o, **m, **w} for o in ["sgd", "adam"] for m in moms[o] for w in widths]
    grid = sp.grid()
    assert grid == expected
    assert [list(p) for p in grid] == [list(p) for p in expected]  # key order: evaluation order
    assert len(grid) == 24
    assert sp.params_from_optuna(grid[4]) == {"opt": "sgd", "mom": 0.5, "n": 2, "w": [16, 8], "act": "relu"}
    for point in grid:
        assert sp.contains(sp.params_from_optuna(point))


def test_grid_float_steps_are_rounded_and_high_adjusted() -> None:
    sp = space({"x": {"float": [0.1, 0.75], "step": 0.1}, "k": {"int": [0, 10], "step": 4}})
    assert sp.to_dict()["params"]["x"] == {"float": [0.1, 0.7], "step": 0.1}
    assert sp.to_dict()["params"]["k"] == {"int": [0, 8], "step": 4}
    xs = sorted({p["x"] for p in sp.grid()})
    assert xs == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    assert sorted({p["k"] for p in sp.grid()}) == [0, 4, 8]


def test_a_high_off_the_step_grid_is_noted() -> None:
    # The high is still lowered to the last grid value (Optuna does the same); the space says so,
    # for `validate` and the run header, instead of dropping 1.0 and 10 without a word.
    sp = space({"x": {"float": [0, 1], "step": 0.3}, "k": {"int": [0, 10], "step": 3},
                "ok": {"float": [0, 1], "step": 0.25}, "n": {"int": [1, 5]},
                "v": [{"int": [1, 4], "step": 2, "when": {"k": 0}},
                      {"float": [0.1, 0.75], "step": 0.1, "when": {"k": 3}}]})
    assert sp.to_dict()["params"]["x"] == {"float": [0.0, 0.9], "step": 0.3}
    assert sp.notes() == [
        "params.x: high 1 is not on the step grid (0, 0.3, ...), so the highest value tried is 0.9",
        "params.k: high 10 is not on the step grid (0, 3, ...), so the highest value tried is 9",
        "params.v[0]: high 4 is not on the step grid (1, 3, ...), so the highest value tried is 3",
        "params.v[1]: high 0.75 is not on the step grid (0.1, 0.2, ...), so the highest value tried is 0.7",
    ]
    # The note is about what was written: the stored (adjusted) form rebuilds an equal space without it.
    again = SearchSpace.from_mapping(sp.to_dict())
    assert again == sp and again.notes() == []


def test_grid_points_drive_optuna_trials() -> None:
    sp = space({"o": {"choice": ["a", "b"]}, "x": {"float": [0.0, 0.3], "step": 0.1, "when": {"o": "a"}},
                "n": {"int": [0, 2]}, "w": {"int": [1, 2], "per": "n"}})
    study = optuna.create_study()
    grid = sp.grid()
    for point in grid:
        study.enqueue_trial(point)
    with no_space_warnings():
        for point in grid:
            trial = study.ask()
            assert sp.suggest(trial) == sp.params_from_optuna(point)
            assert trial.params == point
            study.tell(trial, 0.0)
    assert len({json.dumps(p, sort_keys=True) for p in grid}) == len(grid) == 4 * (1 + 2 + 4) + 1 + 2 + 4


@pytest.mark.parametrize(("params", "parts"), [
    ({"lr": {"float": [0.1, 1.0]}}, ["params.lr: grid search needs a finite space", "continuous float", "add step"]),
    ({"lr": {"float": [0.1, 1.0], "log": True}}, ["params.lr: grid search needs a finite space", "use choice"]),
    ({"n": {"int": [1, 64], "log": True}},
     ["params.n: grid search needs a finite space", "log-scaled int", "drop log"]),
    ({"o": {"choice": [1, 2]}, "v": [{"choice": [1], "when": {"o": 1}}, {"float": [0.0, 1.0], "when": {"o": 2}}]},
     ["params.v[1]: grid search needs a finite space"]),
    ({"a": {"int": [0, 999]}, "b": {"int": [0, 999]}, "c": {"int": [0, 999]}},
     ["params: the grid has more than 1,000,000"]),
    ({"n": {"int": [0, 1024]}, "w": {"int": [1, 10], "per": "n"}}, ["the grid has more than 1,000,000"]),
    ({"x": {"int": [0, 2**52]}}, ["the grid has more than 1,000,000"]),
])
def test_grid_errors(params: dict[str, Any], parts: list[str]) -> None:
    with pytest.raises(SpaceError) as info:
        space(params).grid()
    assert_one_line_error(info.value, "<inline>: ", *parts)


def test_grid_of_fixed_only_space_is_one_empty_point() -> None:
    assert space({"a": 1, "b": [1, 2]}).grid() == [{}]
    assert space({}).grid() == [{}]


def test_grid_cap_is_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    assert MAX_GRID_POINTS == 1_000_000
    monkeypatch.setattr("tuner.space.MAX_GRID_POINTS", 12)
    assert len(space({"a": {"int": [1, 3]}, "b": {"choice": [1, 2, 3, 4]}}).grid()) == 12
    with pytest.raises(SpaceError, match="more than 12 points"):
        space({"a": {"int": [1, 3]}, "b": {"choice": [1, 2, 3, 4, 5]}}).grid()
    with pytest.raises(SpaceError, match="more than 12 points"):
        space({"n": {"int": [0, 2]}, "w": {"choice": [1, 2, 3]}, "v": {"int": [1, 3], "per": "n"}}).grid()


# --------------------------------------------------------------------------- to_dict


def test_to_dict_is_canonical(tmp_path: Path) -> None:
    a = space({"o": {"choice": ["x", "y"]}, "m": {"float": [0, 1], "log": False, "when": {"o": "x"}},
               "k": {"int": [1, 9], "step": 1}, "f": 3,
               "v": [{"int": [1, 2], "when": {"o": "x"}}, {"int": [3, 4], "when": {"o": ["y"]}}]})
    b = space({"v": [{"int": [3, 4], "when": {"o": "y"}}, {"int": [1, 2], "when": {"o": ["x"]}}],
               "f": {"value": 3}, "k": {"int": [1, 9]}, "m": {"when": {"o": ["x", "x"]}, "float": [0.0, 1.0]},
               "o": {"choice": ["x", "y"]}})
    assert a.to_dict() == b.to_dict() and a == b
    assert json.dumps(a.to_dict(), sort_keys=False) == json.dumps(b.to_dict(), sort_keys=False)
    assert a != space({"o": {"choice": ["y", "x"]}, "m": {"float": [0, 1], "when": {"o": "x"}},
                       "k": {"int": [1, 9]}, "f": 3,
                       "v": [{"int": [1, 2], "when": {"o": "x"}}, {"int": [3, 4], "when": {"o": "y"}}]})
    assert space({"c": {"choice": [1]}}) != space({"c": {"choice": [True]}})
    d = a.to_dict()
    d["params"]["o"]["choice"].append("z")  # a copy: mutating it leaves the space alone
    assert a.to_dict() != d


def test_to_dict_include_order_insensitive_only_when_disjoint(tmp_path: Path) -> None:
    write(tmp_path, "p.yaml", "params:\n  a: {int: [1, 2]}\n  s: {choice: [1]}\n")
    write(tmp_path, "q.yaml", "params:\n  b: {float: [0.0, 1.0]}\n")
    write(tmp_path, "r.yaml", "params:\n  s: {choice: [2]}\n")
    one = SearchSpace.from_mapping({"include": ["p.yaml", "q.yaml"], "params": {}}, base_dir=tmp_path)
    two = SearchSpace.from_mapping({"include": ["q.yaml", "p.yaml"], "params": {}}, base_dir=tmp_path)
    assert one.to_dict() == two.to_dict()
    assert one.names != two.names
    three = SearchSpace.from_mapping({"include": ["p.yaml", "r.yaml"], "params": {}}, base_dir=tmp_path)
    four = SearchSpace.from_mapping({"include": ["r.yaml", "p.yaml"], "params": {}}, base_dir=tmp_path)
    assert three.to_dict() != four.to_dict()  # overlapping includes: the later one wins
    assert three.to_dict()["params"]["s"] == {"choice": [2]}
    assert SearchSpace.load(ROOT / "search_spaces" / "mlp.yaml").to_dict() == \
        SearchSpace.load(ROOT / "search_spaces" / "mlp.yaml").to_dict()


def test_import_is_light() -> None:
    code = ("import sys, tuner; before = set(sys.modules); import tuner.space; "
            "print(sorted(m for m in ('optuna', 'numpy', 'ray', 'torch') if m in set(sys.modules) - before))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- property-based

CHOICE_POOL = [None, True, False, 0, 1, 2.5, -3, "a", "b", "relu"]
FIXED = st.one_of(st.integers(-5, 5), st.text(max_size=3), st.none(), st.booleans(),
                  st.lists(st.integers(0, 9), max_size=3), st.floats(-10, 10, allow_nan=False))


@st.composite
def valid_spaces(draw: st.DrawFn) -> dict[str, Any]:
    """Random valid spaces: floats/ints (log, step), choices, fixed values, when, per, variants."""
    params: dict[str, Any] = {}
    choices: dict[str, list[Any]] = {}
    counts: list[str] = []
    for i in range(draw(st.integers(1, 6))):
        name = f"p{i}"
        kind = draw(st.sampled_from(["count", "choice", "float", "int", "choice", "value", "variants", "count"]))
        if kind == "variants" and not any(len(c) >= 2 for c in choices.values()):
            kind = "choice"
        if kind == "float":
            if draw(st.booleans()):
                low = draw(st.floats(1e-4, 10))
                spec: Any = {"float": [low, low * draw(st.floats(1, 100))], "log": True}
            else:
                low = draw(st.floats(-100, 100))
                spec = {"float": [low, low + draw(st.floats(0, 2))]}
                if draw(st.booleans()):  # stepped ranges as people write them: few decimals
                    step = draw(st.sampled_from([0.25, 0.5, 0.1, 1, 0.3, 0.05]))
                    # a step wider than the range is refused (one grid value), unless low == high
                    width = draw(st.one_of(st.just(0.0), st.floats(1.01 * step, 2 + step)))
                    spec = {"float": [round(low, 2), round(low, 2) + width], "step": step}
        elif kind in ("int", "count"):
            low = draw(st.integers(0, 2) if kind == "count" else st.integers(-50, 50))
            spec = {"int": [low, draw(st.integers(low, 3)) if kind == "count" else low + draw(st.integers(0, 3))]}
            if kind == "int" and low >= 1 and draw(st.booleans()):
                spec["log"] = True
            elif kind == "int" and draw(st.booleans()):
                width = spec["int"][1] - spec["int"][0]  # a step past a width > 0 is refused (one grid value)
                spec["step"] = draw(st.integers(1, 3 if width == 0 else width))
        elif kind == "choice":
            values = draw(st.lists(st.sampled_from(CHOICE_POOL), min_size=1, max_size=4, unique=True))
            spec = {"choice": values}
        elif kind == "value":
            spec = {"value": draw(FIXED)} if draw(st.booleans()) else draw(FIXED)
            if isinstance(spec, list):
                spec = {"value": spec}
        else:
            target = draw(st.sampled_from(sorted(n for n, c in choices.items() if len(c) >= 2)))
            options = choices[target]
            cut = draw(st.integers(1, len(options) - 1))
            spec = [{"int": [0, draw(st.integers(0, 4))], "when": {target: options[:cut]}},
                    {"choice": ["u", "v"], "when": {target: options[cut:]}}]
        if isinstance(spec, dict) and choices and draw(st.booleans()):
            target = draw(st.sampled_from(sorted(choices)))
            options = st.lists(st.sampled_from(choices[target]), min_size=1, max_size=3, unique=True)
            spec["when"] = {target: draw(options)}
        if isinstance(spec, dict) and counts and kind not in ("count",) and draw(st.booleans()):
            spec["per"] = draw(st.sampled_from(counts))
        if kind == "count":
            counts.append(name)
        if kind == "choice" and "per" not in spec:  # a per list cannot be a condition target
            choices[name] = spec["choice"]
        params[name] = spec
    return {"params": params}


def _grid_bound(sp: SearchSpace) -> float:
    """A generous upper bound of the grid size computed from to_dict (independent of grid())."""
    total = 1.0
    for spec in sp.to_dict()["params"].values():
        sizes = []
        for s in spec if isinstance(spec, list) else [spec]:
            if "float" in s:
                lo, hi = s["float"]
                sizes.append(1 if lo == hi else (math.inf if "step" not in s else (hi - lo) / s["step"] + 2))
            elif "int" in s:
                lo, hi = s["int"]
                sizes.append(math.inf if s.get("log") and lo != hi else (hi - lo) / s.get("step", 1) + 1)
            elif "choice" in s:
                sizes.append(len(s["choice"]))
            else:
                sizes.append(1)
        size = sum(sizes)
        # per counts are at most 3 here: 1 + size + size**2 + size**3 <= 4 * size**3
        total *= 4 * size ** 3 if any("per" in s for s in (spec if isinstance(spec, list) else [spec])) else size
    return total


def _key(point: dict[str, Any]) -> str:
    return json.dumps({k: round(v, 9) + 0.0 if isinstance(v, float) else v for k, v in point.items()}, sort_keys=True)


@HYPOTHESIS
@given(data=valid_spaces(), seed=st.integers(0, 2**16), tpe=st.booleans())
def test_property_suggested_points_lie_inside(data: dict[str, Any], seed: int, tpe: bool) -> None:
    sp = SearchSpace.from_mapping(data)
    assert SearchSpace.from_mapping(sp.to_dict()) == sp
    text = json.dumps(data)
    for feature in ('"when"', '"per"', '"log"', '"step"', '"choice"', "[{"):
        event(f"has {feature}", feature in text)
    sampler = (optuna.samplers.TPESampler(seed=seed, n_startup_trials=3) if tpe
               else optuna.samplers.RandomSampler(seed=seed))
    with no_space_warnings():
        runs = sample(sp, sampler, 6)
    for params, trial in runs:
        assert sp.contains(params), (params, sp.to_dict())
        assert sp.params_from_optuna(trial.params) == params
        assert sp.to_optuna_params(params) == trial.params
        assert sp.distributions_for(params) == trial.distributions
    event("grid", "checked" if _grid_bound(sp) <= 3000 else "infinite" if math.isinf(_grid_bound(sp)) else "large")
    if _grid_bound(sp) <= 3000:
        grid = sp.grid()
        keys = {_key(p) for p in grid}
        assert len(keys) == len(grid)
        for point in grid:
            params = sp.params_from_optuna(point)
            assert sp.contains(params), (point, sp.to_dict())
            assert sp.to_optuna_params(params) == point
            for name, dist in sp.distributions_for(params).items():
                assert dist._contains(dist.to_internal_repr(point[name]))
        for _, trial in runs:  # every sampled point is one of the grid's points
            assert _key(trial.params) in keys
    elif math.isinf(_grid_bound(sp)):
        with pytest.raises(SpaceError, match="grid search needs a finite space"):
            sp.grid()


BREAKAGES = ["bad_bound_type", "inverted", "log_low", "unknown_key", "empty_choice", "unknown_when", "unknown_per",
             "nan", "when_never", "step_log", "cycle", "per_float", "variant_no_when", "top_key", "not_mapping_when",
             "bool_bound", "zero_step"]


@HYPOTHESIS
@given(data=valid_spaces(), breakage=st.sampled_from(BREAKAGES),
       junk=st.one_of(st.text(max_size=4), st.none(), st.booleans(), st.lists(st.integers(), max_size=2)),
       low=st.floats(-10, 0), extra=st.text(min_size=1, max_size=5))
def test_property_broken_specs_raise_space_error(data: dict[str, Any], breakage: str, junk: Any, low: float,
                                                 extra: str) -> None:
    params = data["params"]
    choice = next((n for n, s in params.items() if isinstance(s, dict) and "choice" in s), None)
    if breakage == "bad_bound_type":
        params["zz"] = {"float": [junk, 1.0]}
    elif breakage == "inverted":
        params["zz"] = {"int": [5, 4]} if junk else {"float": [1.0, 1.0 - 1e-9]}
    elif breakage == "log_low":
        params["zz"] = {"float": [low, 1.0], "log": True} if junk else {"int": [int(low), 3], "log": True}
    elif breakage == "unknown_key":
        key = extra if extra not in ("float", "int", "choice", "value", "log", "step", "when", "per") else "lgo"
        params["zz"] = {"float": [0.0, 1.0], key: 1}
    elif breakage == "empty_choice":
        params["zz"] = {"choice": []}
    elif breakage == "unknown_when":
        params["zz"] = {"float": [0.0, 1.0], "when": {"nope_" + "x": 1}}
    elif breakage == "unknown_per":
        params["zz"] = {"float": [0.0, 1.0], "per": "nope_x"}
    elif breakage == "nan":
        params["zz"] = {"float": [float("nan"), 1.0]} if junk else {"float": [0.0, float("inf")]}
    elif breakage == "when_never":
        params["zz_c"] = {"choice": ["a", "b"]}
        params["zz"] = {"value": 1, "when": {"zz_c": junk if junk not in ("a", "b") else "c"}}
    elif breakage == "step_log":
        params["zz"] = {"float": [0.1, 1.0], "log": True, "step": 0.1}
    elif breakage == "cycle":
        params["zz_a"] = {"choice": [1, 2], "when": {"zz_b": 1}}
        params["zz_b"] = {"choice": [1, 2], "when": {"zz_a": 1}}
    elif breakage == "per_float":
        params["zz_f"] = {"float": [1.0, 2.0]}
        params["zz"] = {"int": [1, 2], "per": "zz_f"}
    elif breakage == "variant_no_when":
        first = {"float": [0.0, 1.0], "when": {choice: params[choice]["choice"][:1]}} if choice else {"int": [1, 2]}
        params["zz"] = [first, {"int": [1, 2]}]
    elif breakage == "top_key":
        data["extra_" + extra] = 1
    elif breakage == "not_mapping_when":
        params["zz"] = {"float": [0.0, 1.0], "when": junk if not isinstance(junk, dict) else 1}
    elif breakage == "bool_bound":
        params["zz"] = {"int": [True, 3]}
    elif breakage == "zero_step":
        params["zz"] = {"float": [0.0, 1.0], "step": 0}
    with pytest.raises(SpaceError) as info:
        SearchSpace.from_mapping(data)
    message = str(info.value)
    assert "\n" not in message and message.startswith("<inline>: ")


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=4), st.dates(),
                    st.binary(max_size=2))
KEYS = st.one_of(st.sampled_from(["float", "int", "choice", "value", "log", "step", "when", "per", "params",
                                  "include", "version", "x", "y"]), st.integers(-2, 2), st.booleans())
ANYTHING = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
                        max_leaves=12)


@settings(HYPOTHESIS, max_examples=300)
@given(doc=st.one_of(ANYTHING, st.dictionaries(st.sampled_from(["params", "version", "include"]), ANYTHING, max_size=3),
                     st.fixed_dictionaries({"params": st.dictionaries(st.sampled_from(["x", "y", "z"]), ANYTHING)})))
def test_property_arbitrary_documents_never_raise_anything_else(doc: Any) -> None:
    try:
        sp = SearchSpace.from_mapping(doc, base_dir=Path("/nonexistent-dir"))
    except SpaceError as exc:
        assert "\n" not in str(exc)
        return
    json.dumps(sp.to_dict(), allow_nan=False)
    assert SearchSpace.from_mapping(sp.to_dict()) == sp
    for params, _ in sample(sp, optuna.samplers.RandomSampler(seed=0), 2):
        assert sp.contains(params)


def test_a_stepped_float_is_drawn_on_its_grid_so_a_condition_on_it_holds() -> None:
    """Optuna draws 0.30000000000000004 for the third step of 0.1: `when: {b: 0.3}` never held
    outside grid search, so `a` was never tuned there, and the objective saw the noise."""
    import optuna

    space = SearchSpace.from_mapping({"params": {"b": {"float": [0.0, 0.5], "step": 0.1},
                                                 "a": {"int": [1, 3], "when": {"b": [0.3, 0.5]}},
                                                 "n": {"int": [2, 2]}, "d": {"float": [0.0, 0.5], "step": 0.1, "per": "n"}}},
                                     source="t")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen: list[dict] = []
    study.optimize(lambda t: seen.append(space.suggest(t)) or 0.0, n_trials=30)
    grid = {0.0, 0.1, 0.2, 0.3, 0.4, 0.5}
    assert {d["b"] for d in seen} <= grid and all(x in grid for d in seen for x in d["d"])
    assert all(("a" in d) == (d["b"] in (0.3, 0.5)) for d in seen) and any(d["b"] == 0.3 for d in seen)
    assert any(t.params["b"] == 0.30000000000000004 for t in study.trials)  # what Optuna stores: read back on the grid
    assert all(space.params_from_optuna(t.params) == d for t, d in zip(study.trials, seen))


def test_narrowing_an_included_choice_leaves_out_what_only_the_dropped_values_used(tmp_path: Path) -> None:
    """`optimizer: {choice: [adam, adamw]}` over the shipped optimizers.yaml failed, naming that
    file (`optimizer is never sgd`), which the user cannot be asked to edit."""
    shipped = Path(__file__).resolve().parents[1] / "search_spaces" / "optimizers.yaml"
    space = SearchSpace.from_mapping({"include": [str(shipped)], "params": {"optimizer": {"choice": ["adam", "adamw"]}}},
                                     source="mine.yaml")
    assert sorted(space.names) == ["lr", "optimizer"]
    notes = space.notes()
    assert any("params.momentum left out: optimizer is never sgd (mine.yaml)" in n for n in notes), notes
    assert any("params.lr[0] left out" in n for n in notes) and any("params.nesterov left out" in n for n in notes)
    assert space.params_from_optuna({"optimizer": "adam", "lr|optimizer=adam/adamw": 0.001}) == {
        "optimizer": "adam", "lr": 0.001}
    # A condition of the user's own file on a value the included param never takes is still a typo.
    with pytest.raises(SpaceError, match=r"mine.yaml: params.x.when.optimizer: optimizer is never sgdd"):
        SearchSpace.from_mapping({"include": [str(shipped)], "params": {"x": {"float": [0, 1],
                                                                              "when": {"optimizer": "sgdd"}}}},
                                 source="mine.yaml")


def test_messages_quote_a_text_choice_that_reads_as_a_number_or_null() -> None:
    """`b: {choice: ["1", 2]}` with `when: {b: 1}` said "b is never 1; b is one of 1, 2", which
    read as if 1 were allowed."""
    with pytest.raises(SpaceError) as info:
        SearchSpace.from_mapping({"params": {"b": {"choice": ["1", 2, None, "null", "adam"]},
                                             "a": {"int": [1, 2], "when": {"b": 1}}}}, source="t")
    assert str(info.value).endswith("b is never 1; b is one of '1', 2, null, 'null', adam")


def test_optuna_distribution_names_every_param_a_trial_of_the_space_can_draw() -> None:
    """What a plain Optuna study's trials are checked against (they store names and distributions
    only): every Optuna name suggest gives, a variant's and a per-layer one's included."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    sp = SearchSpace.from_mapping({"params": {
        "opt": {"choice": ["adam", "sgd"]}, "n": {"int": [1, 3]}, "w": {"int": [8, 64], "log": True, "per": "n"},
        "lr": [{"float": [1e-4, 1e-2], "log": True, "when": {"opt": "adam"}}, {"value": 0.1, "when": {"opt": "sgd"}}],
        "fixed": {"value": 3}}})
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    sp.suggest(trial)
    assert all(sp.optuna_distribution(name) == d for name, d in trial.distributions.items())
    assert sp.optuna_distribution("opt") == CategoricalDistribution(["adam", "sgd"])
    assert sp.optuna_distribution("w.2") == IntDistribution(8, 64, log=True)
    assert sp.optuna_distribution("lr|opt=adam") == FloatDistribution(1e-4, 1e-2, log=True)
    assert [sp.optuna_distribution(n) for n in ("w", "w.x", "lr|opt=sgd", "lr", "fixed", "k")] == [None] * 6
    assert sorted(sp.drawn_by_every_trial()) == ["n", "opt"]
