"""A resumed study must go on measuring what it measured: another objective, task or task
arguments under the same name is refused like another search space, and the stored spec is left
as the earlier trials ran with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest

import tuner
from tests import objectives
from tuner.engine import _attrs

pytestmark = pytest.mark.usefixtures("ray_cluster")
SPACE = {"params": {"x": {"float": [-5.0, 5.0]}}}


def _spec(**kw: Any) -> dict[str, Any]:
    return {"name": "same", "search_space": SPACE, "n_trials": 2, "concurrency": 1, "seed": 1, "pruner": "none", **kw}


def _stored_spec(url: str, name: str = "same") -> dict[str, Any]:
    study = optuna.load_study(study_name=name, storage=url)
    return study._storage.get_study_system_attrs(study._study_id)[_attrs.SPEC]


def test_another_objective_under_the_same_name_is_refused(sqlite_url: str) -> None:
    tuner.run(_spec(), objectives.quadratic, storage=sqlite_url)
    before = _stored_spec(sqlite_url)
    with pytest.raises(tuner.UserInputError, match=r"objective 'tests.objectives:quadratic' \(this run has "
                                                   r"'tests.objectives:always_fails'\).*--force"):
        tuner.run(_spec(n_trials=4), objectives.always_fails, storage=sqlite_url)
    assert _stored_spec(sqlite_url) == before
    assert len(optuna.load_study(study_name="same", storage=sqlite_url).get_trials()) == 2
    # More trials of the same objective still resume.
    assert len(tuner.run(_spec(n_trials=3), objectives.quadratic, storage=sqlite_url).get_trials()) == 3


def test_other_task_args_are_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    small = {"task_args.max_samples": 200, "n_trials": 1, "concurrency": 1,
             "search_space": {"include": ["../search_spaces/mlp.yaml"], "params": {"epochs": 1, "n_layers": 1}}}
    quickstart = Path(__file__).resolve().parents[2] / "studies" / "quickstart.yaml"
    tuner.run(quickstart, storage=url, overrides=small)
    before = _stored_spec(url, "quickstart")
    with pytest.raises(tuner.UserInputError, match=r"other task_args \(max_samples 200 -> 300\)"):
        tuner.run(quickstart, storage=url, overrides={**small, "task_args.max_samples": 300, "n_trials": 2})
    assert _stored_spec(url, "quickstart") == before
    trials = optuna.load_study(study_name="quickstart", storage=url).get_trials()
    assert len(trials) == 1


def test_a_spec_file_without_an_objective_runs_the_function_passed(tmp_path: Path, sqlite_url: str) -> None:
    # The README's `tuner.run("studies/mine.yaml", objective=objective)`: the file need not name one.
    spec = tmp_path / "mine.yaml"
    spec.write_text("name: mine\nsearch_space:\n  params:\n    x: {float: [-5, 5]}\nn_trials: 2\npruner: none\nseed: 0\n")
    study = tuner.run(spec, objective=objectives.quadratic, storage=sqlite_url)
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE", "COMPLETE"]
    assert _stored_spec(sqlite_url, "mine")["objective"] == "tests.objectives:quadratic"
    with pytest.raises(tuner.SpecError, match="task: missing"):
        tuner.validate(spec)  # without a function the file still needs `objective:` or `task:`


def test_the_same_objective_from_a_moved_folder_resumes(tmp_path: Path, sqlite_url: str) -> None:
    # A file objective is stored with its absolute path: a moved project (or another machine
    # sharing a PostgreSQL study) names the same function by another path, which is no change.
    code = "def f(params, ctx):\n    return (params['x'] - 1.0) ** 2\n"
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "obj.py").write_text(code)
    first = _spec(objective=f"{tmp_path / 'a' / 'obj.py'}:f")
    tuner.run(first, storage=sqlite_url)
    moved = _spec(objective=f"{tmp_path / 'b' / 'obj.py'}:f", n_trials=3)
    assert len(tuner.run(moved, storage=sqlite_url).get_trials()) == 3
    with pytest.raises(tuner.UserInputError, match=r"objective .*obj.py:f' \(this run has .*obj.py:g'\)"):
        (tmp_path / "b" / "obj.py").write_text(code + "g = f\n")
        tuner.run(_spec(objective=f"{tmp_path / 'b' / 'obj.py'}:g", n_trials=4), storage=sqlite_url)


def test_a_closure_or_a_lambda_passed_as_the_objective_is_a_label_not_an_import(tmp_path: Path,
                                                                                sqlite_url: str) -> None:
    # The function travels to the workers itself; its name was imported as a check, which a
    # closure or a lambda cannot pass ("cannot import __main__:objective").
    spec = tmp_path / "mine.yaml"
    spec.write_text("name: mine\nsearch_space:\n  params:\n    x: {float: [-5, 5]}\nn_trials: 2\npruner: none\nseed: 0\n")

    def make(shift: float) -> Any:
        def objective(params: dict[str, Any], ctx: Any) -> float:
            return (params["x"] - shift) ** 2
        return objective

    assert tuner.validate(spec, objective=make(1.0)).objective.endswith(":objective")
    assert tuner.validate(_spec(), objective=lambda p, c: p["x"]).objective.endswith(":<lambda>")
    study = tuner.run(spec, objective=make(2.0), storage=sqlite_url)
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE", "COMPLETE"]


def test_a_function_passed_with_a_spec_that_names_another_objective_is_what_the_study_records(
        tmp_path: Path, sqlite_url: str) -> None:
    """The function replaces the spec's `objective:`. Before, the study stored the spec's, which
    its trials never ran, and a resume with another function under that spec passed unchecked."""
    (tmp_path / "obj.py").write_text("def quadratic(params, ctx):\n    return params['x'] ** 2\n")
    spec = tmp_path / "named.yaml"
    spec.write_text("name: named\nobjective: obj.py:quadratic\nsearch_space:\n  params:\n    x: {float: [-5, 5]}\n"
                    "n_trials: 2\npruner: none\nseed: 0\n")
    tuner.run(spec, storage=sqlite_url)  # the file's objective
    assert _stored_spec(sqlite_url, "named")["objective"] == f"{tmp_path / 'obj.py'}:quadratic"
    with pytest.raises(tuner.UserInputError, match=r"objective '.*obj.py:quadratic' \(this run has "
                                                   r"'tests.objectives:always_fails'\)"):
        tuner.run(spec, objective=objectives.always_fails, storage=sqlite_url, overrides={"n_trials": 4})
    assert len(optuna.load_study(study_name="named", storage=sqlite_url).get_trials()) == 2
    # Another file's function of the same name is another objective (obj3.py's `quadratic`).
    (tmp_path / "obj3.py").write_text("def quadratic(params, ctx):\n    return params['x'] ** 4\n")
    other = spec.with_name("other.yaml")
    other.write_text(spec.read_text().replace("obj.py:quadratic", "obj3.py:quadratic"))
    with pytest.raises(tuner.UserInputError, match=r"obj.py:quadratic' \(this run has '.*obj3.py:quadratic'\)"):
        tuner.run(other, storage=sqlite_url, overrides={"n_trials": 4})
    # The same file's function passed in (imported, or moved with its folder) goes on, and is recorded.
    import importlib.util

    loaded = importlib.util.spec_from_file_location("obj", tmp_path / "obj.py")
    module = importlib.util.module_from_spec(loaded)  # type: ignore[arg-type]
    loaded.loader.exec_module(module)  # type: ignore[union-attr]
    tuner.run(spec, objective=module.quadratic, storage=sqlite_url, overrides={"n_trials": 3})
    assert _stored_spec(sqlite_url, "named")["objective"] == "obj:quadratic"
    assert len(optuna.load_study(study_name="named", storage=sqlite_url).get_trials()) == 3


def test_a_validated_spec_run_with_a_function_records_the_function(sqlite_url: str) -> None:
    """tuner.run(StudySpec, objective=fn) took the spec as it was, recording its objective."""
    checked = tuner.validate(_spec(name="checked", objective="tests.objectives:always_fails"))
    tuner.run(checked, objectives.quadratic, storage=sqlite_url)
    assert _stored_spec(sqlite_url, "checked")["objective"] == "tests.objectives:quadratic"
    assert {t.state for t in optuna.load_study(study_name="checked", storage=sqlite_url).trials} == {
        optuna.trial.TrialState.COMPLETE}


def _plain_study(url: str, objective: Any, *, metric_names: list[str] | None = None) -> None:
    """A study plain Optuna created under the name tuner's specs here use: it stores no tuner spec or space."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(study_name="same", storage=url)
    if metric_names:
        study.set_metric_names(metric_names)
    study.optimize(objective, n_trials=3)


def test_a_plain_optuna_study_over_other_parameters_or_metrics_is_refused_and_left_as_it_was(sqlite_url: str) -> None:
    """A plain Optuna study of the same name was adopted whatever it held: one ranking then mixed
    trials over x and k with trials over x and y, and TPE learnt from both."""
    _plain_study(sqlite_url, lambda t: (t.suggest_float("x", -5, 5) - 1) ** 2 + t.suggest_int("k", 1, 3))
    before = optuna.load_study(study_name="same", storage=sqlite_url)
    attrs = before._storage.get_study_system_attrs(before._study_id)
    xy = {"params": {"x": {"float": [-5.0, 5.0]}, "y": {"float": [-5.0, 5.0]}}}
    with pytest.raises(tuner.UserInputError, match=r"study 'same' already exists with a different search space "
                                                   r"than its trials' \(added: y; removed: k\); .*--force"):
        tuner.run(_spec(search_space=xy, metric="loss"), objectives.quadratic, storage=sqlite_url)
    narrow = {"params": {"x": {"float": [-1.0, 1.0]}, "k": {"int": [1, 3]}}}
    with pytest.raises(tuner.UserInputError, match=r"\(changed: x float \[-5.0, 5.0\] -> float \[-1.0, 1.0\]\)"):
        tuner.run(_spec(search_space=narrow), objectives.quadratic, storage=sqlite_url)
    after = optuna.load_study(study_name="same", storage=sqlite_url)
    assert after._storage.get_study_system_attrs(after._study_id) == attrs and len(after.trials) == 3


def test_a_plain_optuna_study_whose_metric_optuna_named_otherwise_is_refused(sqlite_url: str) -> None:
    _plain_study(sqlite_url, lambda t: t.suggest_float("x", -5, 5) ** 2, metric_names=["acc"])
    with pytest.raises(tuner.UserInputError, match=r"metrics \['acc'\] \(this run has \['loss'\]\)"):
        tuner.run(_spec(metric="loss"), objectives.quadratic, storage=sqlite_url)
    assert len(optuna.load_study(study_name="same", storage=sqlite_url).trials) == 3


def test_a_plain_optuna_study_whose_trials_fit_the_space_is_resumed_and_then_compared_as_tuners_own(
        sqlite_url: str) -> None:
    from tuner._api import best_trial, list_studies, study_details

    _plain_study(sqlite_url, lambda t: (t.suggest_float("x", -5, 5) - 2) ** 2)
    study = tuner.run(_spec(n_trials=5, metric="loss"), objectives.quadratic, storage=sqlite_url)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 5
    attrs = study._storage.get_study_system_attrs(study._study_id)
    assert attrs[_attrs.SPACE] == tuner.validate(_spec(), objective=objectives.quadratic).search_space.to_dict()
    # Its values are `loss` wherever they are shown (Optuna called them `value`).
    assert study.metric_names == ["loss"] and list_studies(sqlite_url)[0].metrics == ["loss"]
    assert study_details("same", sqlite_url)["metrics"] == ["loss"]
    assert best_trial("same", sqlite_url)["objectives"] == ["loss"]
    with pytest.raises(tuner.UserInputError, match=r"a different search space \(added: y\)"):
        tuner.run(_spec(n_trials=6, metric="loss", search_space={"params": {**SPACE["params"], "y": {"float": [0, 1]}}}),
                  objectives.quadratic, storage=sqlite_url)
