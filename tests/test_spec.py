"""Study specs: defaults, overrides, and one-line errors for every kind of mistake."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuner.exceptions import SpecError, UserInputError
from tuner.spec import apply_overrides, load_spec, parse_duration, spec_from_mapping

ROOT = Path(__file__).resolve().parent.parent

BASE: dict[str, Any] = {
    "name": "s",
    "objective": "tests.objectives:quadratic",
    "search_space": {"params": {"x": {"float": [-1.0, 1.0]}}},
}


def _spec(**kw: Any) -> Any:
    return spec_from_mapping({**BASE, **kw}, source="t.yaml", base_dir=ROOT)


def test_defaults() -> None:
    s = _spec()
    assert (s.n_trials, s.concurrency, s.sampler, s.pruner, s.max_failures) == (20, 1, "tpe", "asha", 10)
    assert s.metrics == ("value",) and s.directions == ("minimize",)
    assert s.resources.cpus == 1.0 and s.resources.gpus == 0.0
    assert s.timeout is None and s.seed is None


def test_gp_gets_no_pruner_unless_one_is_named() -> None:
    # GPSampler models completed trials only; under ASHA it would hardly leave its random start-up.
    assert (_spec(sampler="gp").pruner, _spec(sampler="gp").pruner_args) == ("none", {})
    assert _spec(sampler={"name": "gp", "args": {"n_startup_trials": 5}}).pruner == "none"
    assert _spec(sampler="gp", pruner="asha").pruner == "asha"
    assert _spec(sampler="gp", pruner="median").pruner == "median"
    # a pruner block without a name still means asha, with its arguments
    named_by_args = _spec(sampler="gp", pruner={"args": {"reduction_factor": 3}})
    assert (named_by_args.pruner, named_by_args.pruner_args) == ("asha", {"reduction_factor": 3})
    assert [_spec(sampler=name).pruner for name in ("tpe", "random", "cmaes", "qmc")] == ["asha"] * 4
    # the command line's sampler counts, as if the file had named it
    overridden = spec_from_mapping(BASE, source="t.yaml", base_dir=ROOT, overrides={"sampler": "gp"})
    assert overridden.pruner == "none"
    assert spec_from_mapping({**BASE, "sampler": "gp"}, source="t.yaml", base_dir=ROOT,
                             overrides={"pruner": "asha"}).pruner == "asha"


def test_the_run_header_says_why_gp_has_no_pruner() -> None:
    from tuner.engine._plugins import plugins_text

    assert plugins_text(_spec(sampler="gp")) == "sampler gp, pruner none (gp's default: it models completed trials only)"
    assert plugins_text(_spec(sampler="gp", pruner="none")) == "sampler gp, pruner none"
    assert plugins_text(_spec(sampler="gp", pruner="asha")) == "sampler gp, pruner asha (reduction_factor 4: the space holds numbers only)"


def test_the_run_header_says_when_nsga2_cannot_breed() -> None:
    # NSGA-II draws at random until a whole generation has completed: a study shorter than a
    # generation is random search under another name, which the header and validate now say.
    from tuner.engine._plugins import plugins_text

    assert plugins_text(_spec(sampler="nsga2")) == (
        "sampler nsga2 (a generation is 50 completed trials, so all 20 trials are random draws: "
        "set sampler.args.population_size to 4 or use tpe), pruner asha (reduction_factor 4: the space holds numbers only)")
    small = {"name": "nsga2", "args": {"population_size": 10}}
    assert plugins_text(_spec(sampler=small, n_trials=100)) == (
        "sampler nsga2 (breeds once 10 trials have completed; pruned trials do not count), pruner asha"
        " (reduction_factor 4: the space holds numbers only)")
    assert plugins_text(_spec(sampler=small, n_trials=100, pruner="none")) == "sampler nsga2, pruner none"
    two_metrics = _spec(sampler=small, n_trials=30, metrics=["a", "b"], directions=["minimize", "minimize"])
    assert plugins_text(two_metrics) == "sampler nsga2, pruner none"  # multi-objective studies are never pruned
    assert plugins_text(_spec(sampler="nsga2", n_trials=50, pruner="none")).startswith(
        "sampler nsga2 (a generation is 50 completed trials, so all 50 trials")


def test_task_defaults_metric_from_the_task() -> None:
    s = spec_from_mapping({"name": "q", "task": "mlp", "search_space": "mlp.yaml"}, source="t.yaml", base_dir=ROOT)
    assert s.metrics == ("val_accuracy",) and s.directions == ("maximize",)


@pytest.mark.parametrize("task_args, metric, direction", [
    ({}, "val_loss", "minimize"),
    ({}, "val_f1", "maximize"),
    ({}, "latency_ms", "minimize"),
    ({"task_type": "regression", "dataset": "diabetes"}, "val_r2", "maximize"),
    ({"task_type": "regression", "dataset": "diabetes"}, "val_mae", "minimize"),
])
def test_a_built_in_metric_without_direction_goes_the_right_way(task_args: dict[str, Any], metric: str,
                                                                  direction: str) -> None:
    s = spec_from_mapping({"name": "q", "task": "mlp", "task_args": task_args, "metric": metric,
                           "search_space": "mlp.yaml"}, source="t.yaml", base_dir=ROOT)
    assert s.directions == (direction,)
    explicit = spec_from_mapping({"name": "q", "task": "mlp", "task_args": task_args, "metric": metric,
                                  "direction": direction[:3], "search_space": "mlp.yaml"}, source="t.yaml", base_dir=ROOT)
    assert explicit.directions == (direction,)
    with pytest.raises(SpecError, match=f"direction: {metric} is better .*; use {direction}"):  # the other way: a typo
        spec_from_mapping({"name": "q", "task": "mlp", "task_args": task_args, "metric": metric,
                           "direction": "maximize" if direction == "minimize" else "minimize",
                           "search_space": "mlp.yaml"}, source="t.yaml", base_dir=ROOT)


def test_every_shipped_study_validates() -> None:
    for path in sorted((ROOT / "studies").glob("*.yaml")):
        if path.name == "fashion_cnn.yaml" and not (ROOT / "data" / "fashion-mnist").is_dir():
            with pytest.raises(SpecError, match="task_args.dataset: data folder .* not found.*download"):
                load_spec(path)  # the data is not shipped: the error says what to fetch and where
            continue
        assert load_spec(path).name


def test_multi_objective_and_plugin_args() -> None:
    s = _spec(metrics=["a", "b"], directions=["min", "maximize"], sampler={"name": "nsga2", "args": {"population_size": 8}})
    assert s.metrics == ("a", "b") and s.directions == ("minimize", "maximize")
    assert s.sampler_args == {"population_size": 8} and s.pruner == "none"


def test_overrides_beat_the_file() -> None:
    s = spec_from_mapping({**BASE, "n_trials": 5, "sampler": "tpe"}, source="t.yaml", base_dir=ROOT,
                          overrides={"n_trials": 9, "resources.gpus": 0.5, "sampler": "random", "pruner.name": "asha"})
    assert (s.n_trials, s.resources.gpus, s.sampler, s.pruner) == (9, 0.5, "random", "asha")
    raw = apply_overrides({"sampler": "tpe"}, {"sampler.args.n_startup_trials": 3}, source="x")
    assert raw == {"sampler": {"name": "tpe", "args": {"n_startup_trials": 3}}}


@pytest.mark.parametrize("value,seconds", [(600, 600.0), ("90s", 90.0), ("10m", 600.0), ("2h", 7200.0), ("1.5h", 5400.0),
                                           ("soon", None), (True, None), (float("nan"), None)])
def test_durations(value: Any, seconds: float | None) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("change,where,problem", [
    ({"name": None}, "name", "missing"),
    ({"name": "a b"}, "name", "invalid study name"),
    ({"objective": None}, "task", "missing"),
    ({"task": "mlp"}, "objective", "both task and objective"),
    ({"task": "mlpp", "objective": None}, "task", "unknown task 'mlpp'"),
    ({"objective": "nocolon"}, "objective", "expected 'package.module:function'"),
    ({"objective": "missing_file.py:f"}, "objective", "file missing_file.py not found"),
    ({"metric": 3}, "metric", "expected a metric name"),
    ({"direction": "up"}, "direction", "invalid direction 'up'"),
    ({"metrics": ["a", "a"], "directions": ["min", "min"]}, "metrics", "listed twice"),
    ({"metrics": ["a", "b"], "directions": ["min"]}, "directions", "one direction per metric"),
    ({"metrics": ["a", "b"], "directions": ["min", "max"], "sampler": "cmaes"}, "sampler", "cannot optimise several"),
    ({"n_trials": 0}, "n_trials", "out of range"),
    ({"n_trials": True}, "n_trials", "expected an integer"),
    ({"concurrency": 1.5}, "concurrency", "expected an integer"),
    ({"rerun_unfinished": "yes"}, "rerun_unfinished", "expected true or false, got 'yes'"),
    ({"resources": {"cpus": 0, "gpus": 0}}, "resources", "some CPU or GPU"),
    ({"resources": {"gpus": -1}}, "resources.gpus", "out of range"),
    ({"resources": {"tpus": 1}}, "resources.tpus", "unknown key"),
    ({"sampler": {"name": "tpe", "args": {"bogus": 1}}}, "sampler.args.bogus", "tpe takes no argument"),
    ({"sampler": {"kind": "tpe"}}, "sampler.kind", "unknown key"),
    ({"pruner": "sometimes"}, "pruner", "unknown pruner"),
    ({"sampler": "grid", "search_space": {"params": {"x": {"float": [0.0, 1.0]}}}}, "params.x", "grid"),
    ({"seed": -1}, "seed", "invalid seed"),
    ({"timeout": "later"}, "timeout", "invalid duration"),
    ({"version": 2}, "version", "unsupported spec version"),
    ({"search_space": "nope.yaml"}, "search_space", "file nope.yaml not found"),
    ({"search_space": 5}, "search_space", "expected a path or a mapping"),
    ({"task_args": {"a": 1}}, "task_args", "only for built-in tasks"),
    ({"storge": "x"}, "storge", "did you mean 'storage'"),
    ({"enqueue": {"x": 0.5}}, "enqueue", "expected a list of points"),
    ({"enqueue": [{"x": 0.5}, {"x": 2.0}]}, "enqueue[1].x", "2.0 is not a number in [-1.0, 1.0]"),
    ({"enqueue": [{"y": 0.5}]}, "enqueue[0].y", "not a param of this search space; use the space's names: x"),
    ({"enqueue": [{"x": 0.5}, {"x": 0.5}]}, "enqueue[1]", "the same point as enqueue[0]"),
    ({"enqueue": [{"x": 0.1}, {"x": 0.2}], "n_trials": 1}, "enqueue", "2 points but n_trials is 1"),
    ({"enqueue": [{"x": 0.5}], "sampler": "grid", "search_space": {"params": {"x": {"choice": [0.5, 1.0]}}}},
     "enqueue", "grid search already tries every point"),
    ({"enqueue": [{"k": 3}], "search_space": {"params": {"x": {"float": [0, 1]}, "k": 3}}}, "enqueue[0]",
     "it gives only values the space fixes"),
])
def test_spec_errors_name_key_and_problem(change: dict[str, Any], where: str, problem: str) -> None:
    data = {**BASE, **change}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(SpecError) as info:
        spec_from_mapping(data, source="t.yaml", base_dir=ROOT)
    message = str(info.value)
    assert message.startswith("t.yaml: ") and "\n" not in message
    assert where in message and problem in message, message


@pytest.mark.parametrize("change,message", [
    ({"metric": "loss", "directions": ["minimize"]}, "directions: `directions` goes with `metrics`, and the spec has "
     "`metric`; use `direction` with `metric` (one objective), or `metrics` with `directions` (several)"),
    ({"metrics": ["loss", "acc"], "direction": "minimize"}, "direction: `direction` goes with `metric`, and the spec "
     "has `metrics`; use `directions` (one per metric) with `metrics`, or `metric` with `direction` (one objective)"),
    ({"metric": "loss", "metrics": ["loss"]}, "metrics: both `metric` and `metrics` are set; use `metric` with "
     "`direction` (one objective), or `metrics` with `directions` (several)"),
    ({"direction": "min", "directions": ["min"]}, "directions: both `direction` and `directions` are set; use "
     "`metric` with `direction` (one objective), or `metrics` with `directions` (several)"),
])
def test_a_mix_of_one_and_several_objectives_names_the_keys_the_spec_has(change: dict[str, Any], message: str) -> None:
    # `directions` beside `metric` was reported as "metrics: both metric and metrics are set": a key not in the file
    with pytest.raises(SpecError) as info:
        _spec(**change)
    assert str(info.value) == f"t.yaml: {message}"


@pytest.mark.parametrize("key,value,message", [
    ("timeout", "0", "timeout: '0' is not a duration: it must be more than 0; use seconds (600) or a unit: 90s, 10m, 2h, "
     "or leave timeout out for no limit"),
    ("trial_timeout", 0, "trial_timeout: 0 is not a duration: it must be more than 0;"),
    ("trial_timeout", "-5m", "trial_timeout: '-5m' is not a duration: it must be more than 0;"),
    ("timeout", "1e99", "timeout: '1e99' is longer than a year; use at most 366d, or leave timeout out for no limit"),
    ("timeout", "inf", "timeout: 'inf' is longer than a year;"),
    ("timeout", float("inf"), "timeout: inf is longer than a year;"),
    ("timeout", "nan", "timeout: 'nan' is not a number of seconds; use seconds (600) or a unit: 90s, 10m, 2h"),
    ("timeout", "soon", "timeout: invalid duration 'soon'; use seconds (600) or a unit: 90s, 10m, 2h"),
])
def test_a_bad_duration_says_what_is_wrong_with_it(key: str, value: Any, message: str) -> None:
    # 0, -5m and 1e99 were all "invalid duration '0'; use seconds (600) or a unit", which 0 already is
    with pytest.raises(SpecError) as info:
        spec_from_mapping({**BASE, key: value}, source="t.yaml", base_dir=ROOT)
    assert str(info.value).startswith(f"t.yaml: {message}"), str(info.value)


def test_bad_task_args_fail_at_validation() -> None:
    with pytest.raises(SpecError, match=r"task_args.datset.*did you mean 'dataset'"):
        spec_from_mapping({"name": "q", "task": "mlp", "task_args": {"datset": "digits"}, "search_space": "mlp.yaml"},
                          source="t.yaml", base_dir=ROOT)


@pytest.mark.parametrize("task,param,domain,message", [
    ("mlp", "optimizer", {"choice": ["adam", "rmsprop"]},
     "search_space: params.optimizer: choice 'rmsprop' is refused by task mlp; expected one of sgd, adam, adamw"),
    ("mlp", "momentum", {"float": [0.5, 1.0]}, "params.momentum: high 1.0 is refused by task mlp; expected a number in [0, 1)"),
    ("cnn", "precision", {"value": "fp8"}, "params.precision: value 'fp8' is refused by task cnn; expected one of fp32"),
    ("mlp", "batch_size", {"int": [0, 64]}, "params.batch_size: low 0 is refused by task mlp; expected an integer >= 1"),
    ("text", "max_length", {"choice": [4, 128]}, "params.max_length: choice 4 is refused by task text; expected an integer in [8, 512]"),
    ("mlp", "activation", {"choice": ["relu", "relu6"]},
     "params.activation: choice 'relu6' is refused by task mlp; expected one of relu, gelu, tanh, silu"),
    ("mlp", "dropout", {"float": [0.0, 1.0]}, "params.dropout: high 1.0 is refused by task mlp; expected a number in [0, 1)"),
    ("cnn", "kernel", {"choice": [3, 4]}, "params.kernel: choice 4 is refused by task cnn; expected an odd integer (3, 5, 7)"),
    ("cnn", "pool", {"choice": ["max", "min"]}, "params.pool: choice 'min' is refused by task cnn; expected one of max, avg, none"),
    ("resnet", "head_init", {"choice": ["random", "xavier"]},
     "params.head_init: choice 'xavier' is refused by task resnet; expected one of random, zeros, keep"),
    ("resnet", "n_stages", {"int": [0, 3]}, "params.n_stages: low 0 is refused by task resnet; expected an integer >= 1"),
])
def test_a_value_the_task_refuses_fails_validation_not_every_trial(task: str, param: str, domain: dict[str, Any],
                                                                    message: str, tmp_path: Path) -> None:
    """Every choice, range end and fixed value goes through the task's own checks before any trial runs."""
    args = {}
    if task == "text":
        (tmp_path / "s.csv").write_text("text,label\n" + "".join(f"film {i},{i % 2}\n" for i in range(20)))
        args = {"dataset": str(tmp_path / "s.csv")}
    params = {"lr": {"float": [1.0e-4, 1.0e-1], "log": True}, param: domain}
    with pytest.raises(SpecError) as info:
        spec_from_mapping({"name": "q", "task": task, "task_args": args, "search_space": {"params": params}},
                          source="t.yaml", base_dir=ROOT)
    assert str(info.value).startswith("t.yaml: search_space: ") and message in str(info.value), str(info.value)
    assert "change or remove it" in str(info.value) and "\n" not in str(info.value)
    accepted = {"optimizer": "adam", "momentum": 0.9, "precision": "fp32", "batch_size": 64, "max_length": 128,
                "activation": "gelu", "dropout": 0.5, "kernel": 5, "pool": "avg", "head_init": "zeros", "n_stages": 2}
    fixed = {**params, param: {"value": accepted[param]}}
    spec_from_mapping({"name": "q", "task": task, "task_args": args, "search_space": {"params": fixed}},
                      source="t.yaml", base_dir=ROOT)  # the same study with an accepted value validates


def test_values_that_depend_on_other_params_are_left_to_the_trial() -> None:
    """A list's length must match another param: checked alone against the defaults it would be refused."""
    spec_from_mapping({"name": "q", "task": "cnn", "search_space": {"params": {
        "n_conv": {"value": 1}, "channels": {"value": [16]}, "lr": {"float": [1.0e-4, 1.0e-1], "log": True}}}},
        source="t.yaml", base_dir=ROOT)
    spec_from_mapping({"name": "q", "task": "resnet", "search_space": {"params": {
        "n_stages": {"value": 1}, "blocks": {"value": [2]}}}}, source="t.yaml", base_dir=ROOT)


def test_a_refused_value_in_a_space_file_names_that_file(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  lr: {float: [1.0e-4, 1.0e-1], log: true}\n  schedule: {choice: [cosine, linear]}\n")
    with pytest.raises(SpecError, match=r"space.yaml: params.schedule: choice 'linear' is refused by task mlp; "
                                        r"expected one of constant, step, cosine, onecycle"):
        spec_from_mapping({"name": "q", "task": "mlp", "search_space": str(space)}, source="t.yaml", base_dir=ROOT)


def test_checking_the_space_against_a_task_imports_no_torch() -> None:
    import subprocess
    import sys

    code = ("import sys, tuner; tuner.validate('studies/quickstart.yaml'); tuner.validate('studies/digits_cnn.yaml'); "
            "tuner.validate('studies/resnet_pretrain.yaml'); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr[-2000:]


def test_metric_the_task_does_not_report() -> None:
    with pytest.raises(SpecError, match=r"metric: task mlp does not report 'val_acuracy'.*did you mean 'val_accuracy'"):
        spec_from_mapping({"name": "q", "task": "mlp", "metric": "val_acuracy", "search_space": "mlp.yaml"},
                          source="t.yaml", base_dir=ROOT)


@pytest.mark.parametrize(("keys", "message"), [
    # Selecting on the test part: the model card then called the selection criterion a held-out score.
    ({"metric": "test_accuracy"}, "t.yaml: metric: test_accuracy is measured on the test part, which is held out to "
                                  "estimate the chosen model: selecting on it leaks the test part into the choice; "
                                  "use val_accuracy"),
    ({"metrics": ["val_accuracy", "test_loss"], "directions": ["maximize", "minimize"]},
     "t.yaml: metrics[1]: test_loss is measured on the test part"),
    # A direction against the metric's meaning: each trial kept its worst epoch's weights.
    ({"metric": "val_accuracy", "direction": "minimize"},
     "t.yaml: direction: val_accuracy is better higher, and minimize would rank the worst trials best, keeping each "
     "one's worst epoch; use maximize (or leave direction out)"),
    ({"metric": "val_loss", "direction": "max"}, "t.yaml: direction: val_loss is better lower, and maximize"),
    ({"metrics": ["val_accuracy", "n_params"], "directions": ["maximize", "maximize"]},
     "t.yaml: directions[1]: n_params is better lower, and maximize would rank the worst trials best; use minimize"),
])
def test_a_built_in_tasks_metric_is_not_selected_on_the_test_part_nor_turned_the_wrong_way(
        keys: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as info:
        spec_from_mapping({"name": "q", "task": "mlp", "search_space": "mlp.yaml", **keys}, source="t.yaml", base_dir=ROOT)
    assert str(info.value).startswith(message)


def test_a_user_objective_names_and_turns_its_metrics_as_it_likes() -> None:
    # Only a built-in task's metrics have a known meaning: an objective's 'test_accuracy' is its own.
    spec = _spec(metric="test_accuracy", direction="minimize")
    assert spec.metrics == ("test_accuracy",) and spec.directions == ("minimize",)


def test_file_level_errors(tmp_path: Path) -> None:
    cases = {
        "missing.yaml": None,
        "list.yaml": b"- a\n- b\n",
        "syntax.yaml": b"name: [unclosed\n",
        "latin1.yaml": "name: caf\xe9\n".encode("latin-1"),
        "bomb.yaml": b"a: &a [x, x, x]\nb: &b [*a, *a, *a]\nc: [*b, *b, *b]\n",
    }
    expected = {"missing.yaml": "no such spec file", "list.yaml": "must be a mapping", "syntax.yaml": "invalid YAML",
                "latin1.yaml": "not UTF-8", "bomb.yaml": "aliases"}
    for name, content in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(SpecError) as info:
            load_spec(path)
        assert expected[name] in str(info.value) and str(path) in str(info.value)


# --------------------------------------------------------------------------- property-based

_junk = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                  st.text(max_size=12), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))
_keys = st.sampled_from(["name", "task", "objective", "search_space", "metric", "direction", "metrics", "directions",
                         "n_trials", "timeout", "trial_timeout", "concurrency", "resources", "sampler", "pruner", "seed",
                         "max_failures", "storage", "version", "task_args", "bogus_key"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_keys, _junk, min_size=1, max_size=4))
def test_broken_specs_always_give_a_spec_error(mutation: dict[str, Any]) -> None:
    """Whatever junk lands in a spec, the result is a valid spec or one SpecError line, never a crash."""
    data = {**BASE, **mutation}
    try:
        spec_from_mapping(data, source="fuzz.yaml", base_dir=ROOT)
    except UserInputError as exc:
        assert str(exc).startswith("fuzz.yaml") and "\n" not in str(exc)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_as_a_spec_file(tmp_path_factory: pytest.TempPathFactory, content: bytes) -> None:
    path = tmp_path_factory.mktemp("fz") / "f.yaml"
    path.write_bytes(content)
    try:
        load_spec(path)
    except UserInputError as exc:
        assert "\n" not in str(exc)


def test_spec_round_trips_to_json() -> None:
    import json

    s = _spec(sampler={"name": "tpe", "args": {"n_startup_trials": 4}}, timeout="5m")
    data = json.loads(json.dumps(s.to_dict()))
    assert data["sampler_args"] == {"n_startup_trials": 4} and data["timeout"] == 300.0
    assert yaml.safe_dump(data)


# --------------------------------------------------------------------------- notes, grid size, storage path


def _write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.yaml"
    path.write_text(text)
    return path


def test_a_high_off_the_step_grid_is_said_by_validate_and_the_run_header(tmp_path: Path) -> None:
    import io
    import json
    from types import SimpleNamespace

    from click.testing import CliRunner

    from tuner.cli import main
    from tuner.engine._plugins import plugins_text
    from tuner.engine._progress import Progress

    spec_file = _write(tmp_path, "name: steps\nobjective: tests.objectives:quadratic\nsearch_space:\n  params:\n"
                                 "    x: {float: [0, 1], step: 0.3}\n    k: {int: [0, 10], step: 3}\n")
    note_x = "params.x: high 1 is not on the step grid (0, 0.3, ...), so the highest value tried is 0.9"
    note_k = "params.k: high 10 is not on the step grid (0, 3, ...), so the highest value tried is 9"
    spec = load_spec(spec_file)
    assert spec.notes == (note_x, note_k)
    assert plugins_text(spec).endswith(f"; note: {note_x}; note: {note_k}")
    assert "notes" not in spec.to_dict()  # what is stored with the study is unchanged
    out = CliRunner().invoke(main, ["validate", str(spec_file)])
    assert out.exit_code == 0 and len(out.output.splitlines()) == 1
    assert "ok: study 'steps'" in out.output and f"note: {note_x}; note: {note_k}" in out.output
    data = json.loads(CliRunner().invoke(main, ["validate", str(spec_file), "--json"]).output)
    assert data["notes"] == [note_x, note_k]
    # The run's first line is the driver's Progress.start, which ends with plugins_text(spec).
    stream = io.StringIO()
    summary = SimpleNamespace(resumed=False, finished_before=0, recovered=[], storage_url="sqlite:///t.db")
    state = SimpleNamespace(study=SimpleNamespace(directions=[1], best_value=None))
    Progress(stream=stream, live=False).start(spec, summary, state)
    first = stream.getvalue().splitlines()[0]
    assert first.startswith("starting study 'steps'") and f"note: {note_x}; note: {note_k}" in first
    assert _spec().notes == ()


GRID_SPACE = {"params": {"a": {"choice": [1, 2, 3]}, "b": {"int": [0, 2]}}}


def test_grid_caps_n_trials_at_the_grids_size_and_says_so() -> None:
    from tuner.engine._plugins import plugins_text

    s = _spec(sampler="grid", search_space=GRID_SPACE, n_trials=20)
    assert s.n_trials == 9 and s.notes == ("grid: 9 points, so n_trials 20 runs 9",)
    assert s.to_dict()["n_trials"] == 9  # the stored target: the study reads finished at 9/9, not stopped at 9/20
    assert plugins_text(s).endswith("; note: grid: 9 points, so n_trials 20 runs 9")
    assert _spec(sampler="grid", search_space=GRID_SPACE).notes == (
        "grid: 9 points, so n_trials 20 (the default) runs 9",)
    for n in (9, 4):  # a target the grid can reach is kept, without a note
        kept = _spec(sampler="grid", search_space=GRID_SPACE, n_trials=n)
        assert (kept.n_trials, kept.notes) == (n, ())
    assert _spec(search_space=GRID_SPACE, n_trials=20).n_trials == 20  # other samplers may repeat points
    # the command line's sampler counts too
    overridden = spec_from_mapping({**BASE, "search_space": GRID_SPACE, "n_trials": 50}, source="t.yaml",
                                   base_dir=ROOT, overrides={"sampler": "grid"})
    assert overridden.n_trials == 9 and overridden.notes == ("grid: 9 points, so n_trials 50 runs 9",)


def test_a_relative_sqlite_storage_in_the_spec_is_read_from_the_specs_folder(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "specs"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    body = "name: st\nobjective: tests.objectives:quadratic\nsearch_space: {params: {x: {float: [0.0, 1.0]}}}\n"
    spec_file = _write(folder, body + "storage: sqlite:///specstore.db\n")
    assert load_spec(spec_file).storage == f"sqlite:///{folder / 'specstore.db'}"
    assert load_spec("../specs/study.yaml").storage == f"sqlite:///{folder / 'specstore.db'}"
    _write(folder, body + "storage: sqlite:///../dbs/s.db?timeout=5\n")
    assert load_spec(spec_file).storage == f"sqlite:///{tmp_path / 'dbs' / 's.db'}?timeout=5"
    for url in ("sqlite:////abs/s.db", "postgresql+psycopg://u@h/db", "sqlite:///:memory:"):
        _write(folder, body + f"storage: '{url}'\n")
        assert load_spec(spec_file).storage == url
    # A URL typed on the command line is read from where it was typed, as --storage and $TUNER_STORAGE are.
    assert load_spec(spec_file, {"storage": "sqlite:///typed.db"}).storage == f"sqlite:///{elsewhere / 'typed.db'}"
    # A mapping from Python: its base_dir when given, else the working directory.
    assert _spec(storage="sqlite:///m.db").storage == f"sqlite:///{ROOT / 'm.db'}"
    assert spec_from_mapping({**BASE, "storage": "sqlite:///m.db"}).storage == f"sqlite:///{elsewhere / 'm.db'}"


def test_a_spec_storage_that_moved_with_the_rule_change_is_refused_not_recreated(tmp_path: Path,
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # Until 2026-12-07 a relative storage: was read from the working directory; a database left
    # there must not be passed over for an empty new one beside the spec.
    (tmp_path / "studies").mkdir()
    spec = tmp_path / "studies" / "s.yaml"
    spec.write_text("name: s\nobjective: tests.objectives:quadratic\nstorage: sqlite:///old.db\n"
                    "search_space:\n  params:\n    x: {float: [0, 1]}\n")
    monkeypatch.chdir(tmp_path)
    assert load_spec(spec).storage == f"sqlite:///{tmp_path / 'studies' / 'old.db'}"  # nothing here yet: fine
    (tmp_path / "old.db").write_bytes(b"")
    with pytest.raises(SpecError, match=r"storage: sqlite:///old.db is read from the spec's folder .* while "
                                        rf"{tmp_path / 'old.db'} exists"):
        load_spec(spec)



def test_sampler_null_is_the_default_sampler_as_pruner_null_is_no_pruner() -> None:
    base = {"name": "s", "objective": "tests.objectives:quadratic", "search_space": {"params": {"x": {"float": [0, 1]}}}}
    assert spec_from_mapping({**base, "sampler": None}).sampler == spec_from_mapping(base).sampler == "tpe"
    assert spec_from_mapping({**base, "pruner": None}).pruner == "none"


def test_an_error_in_a_value_given_on_the_command_line_says_so(tmp_path: Path) -> None:
    # "studies/mlp_pareto.yaml: pruner: ... set pruner: none" sent users to a file that said pruner: none.
    from tuner.spec import load_spec

    with pytest.raises(SpecError) as info:
        load_spec(ROOT / "studies" / "mlp_pareto.yaml", {"pruner": "median"})
    assert str(info.value) == (f"{ROOT / 'studies' / 'mlp_pareto.yaml'}: pruner: pruning is not supported for "
                               "multi-objective studies (pruner='median' given on the command line); set pruner: none")
    with pytest.raises(SpecError, match=r"task_args\.datset: unknown key \(task_args\.datset='x' given on the command "
                                        r"line\); did you mean 'dataset'\?"):
        load_spec(ROOT / "studies" / "quickstart.yaml", {"task_args.datset": "x"})
    with pytest.raises(SpecError) as info:  # an error in the file itself, with an unrelated override, is left as it was
        spec_from_mapping({"name": "q", "task": "mlp", "search_space": "mlp.yaml", "metric": "val_acuracy"},
                          source="t.yaml", base_dir=ROOT, overrides={"n_trials": 3})
    assert "command line" not in str(info.value)


@pytest.mark.parametrize("command", ["validate", "run"])
def test_data_every_trial_would_refuse_is_one_line_before_the_run_stores_anything(tmp_path: Path,
                                                                                 command: str) -> None:
    """A built-in task's data is read once when the spec is validated (``Task.check_data``): a CSV with
    one class used to pass ``tuner validate`` and fail every trial of the run, which stopped with exit 3."""
    from click.testing import CliRunner

    from tuner.cli import main

    (tmp_path / "one.csv").write_text("a,b,label\n" + "".join(f"{i},{i % 3},0\n" for i in range(11)))
    spec_file = _write(tmp_path, "name: one\ntask: mlp\ntask_args: {dataset: one.csv}\nn_trials: 1\nsearch_space:\n"
                                 "  params: {n_layers: 1, width: [8], lr: 0.01, batch_size: 32, epochs: 1}\n")
    db = tmp_path / "t.db"
    args = [command, str(spec_file)] + (["--storage", f"sqlite:///{db}"] if command == "run" else [])
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 2 and len(out.output.splitlines()) == 1, out.output
    assert f"{spec_file}: task_args.dataset: {tmp_path / 'one.csv'} has a single class" in out.output
    assert not db.exists()
