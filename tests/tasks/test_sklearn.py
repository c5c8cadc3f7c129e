"""``task: sklearn``: estimators by class path, k-fold CV reported per fold, refit and test, saved model."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin

from tuner.exceptions import SpaceError, SpecError, TrialPruned
from tuner.spec import spec_from_mapping
from tuner.tasks import Task, get_task
from tuner.tasks.sklearn_task import SklearnTask

ROOT = Path(__file__).resolve().parents[2]
HGB = "sklearn.ensemble.HistGradientBoostingClassifier"
HGB_REG = "sklearn.ensemble.HistGradientBoostingRegressor"
LOGREG = "sklearn.linear_model.LogisticRegression"
FAST_HGB = {"max_iter": 10, "max_leaf_nodes": 8}
TIMING = {"fit_time_s", "refit_time_s", "train_time_s", "latency_ms", "fold_time_s"}


def _untimed(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if k not in TIMING}


class ThreadProbe(ClassifierMixin, BaseEstimator):
    """Predicts the majority class; records the BLAS/OpenMP thread limits seen during ``fit``."""

    seen_threads: list[int] = []

    def __init__(self, n_jobs: int | None = None, random_state: int | None = None) -> None:
        self.n_jobs = n_jobs
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> "ThreadProbe":
        from threadpoolctl import threadpool_info

        ThreadProbe.seen_threads.extend(int(p["num_threads"]) for p in threadpool_info())
        self.classes_ = np.unique(y)
        self.majority_ = int(np.bincount(y).argmax())
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.full(len(X), self.majority_)


# ---- the contract every task passes -----------------------------------------------------------------


def test_registered_and_constructible_without_arguments() -> None:
    cls = get_task("sklearn")
    assert cls is SklearnTask and issubclass(cls, Task)
    task = cls()  # the spec validator does this to ask for metric names
    assert task.args["estimator"] == HGB and task.task_type == "classification"
    names = task.metric_names()  # a classifier's: a regressor's metric is refused (see below)
    assert cls.default_metric in names and cls.default_direction == "maximize"
    assert {"val_accuracy", "val_f1", "test_accuracy", "latency_ms", "fold_time_s"} <= set(names)
    assert not {"val_rmse", "val_mae", "val_r2", "test_r2"} & set(names)


def test_looking_up_the_task_does_not_import_sklearn() -> None:
    code = ("import sys; from tuner.tasks import get_task; get_task('sklearn'); "
            "bad = [m for m in ('torch', 'sklearn', 'ray') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# ---- classification ----------------------------------------------------------------------------------


def test_classification_reports_folds_tests_and_saves_a_model(make_ctx) -> None:
    task = SklearnTask({"estimator": HGB, "cv": 4, "max_samples": 400})
    ctx = make_ctx()
    final = task.run({**FAST_HGB, "learning_rate": 0.2}, ctx)

    # one report per fold, running means of the fold scores; the last one is the CV estimate
    assert [step for step, _ in ctx.reports] == [1, 2, 3, 4]
    assert all(set(m) == {"val_accuracy", "val_f1", "val_precision", "val_recall", "fold_time_s"}
               for _, m in ctx.reports)
    folds = ctx.attrs["cv_scores"]["val_accuracy"]
    assert len(folds) == 4
    assert ctx.series("val_accuracy") == pytest.approx([np.mean(folds[:k]) for k in range(1, 5)])
    assert final["val_accuracy"] == pytest.approx(ctx.series("val_accuracy")[-1])
    assert set(final) <= set(task.metric_names()) and set(final) == set(task.reported_metrics()) - {"fold_time_s"}
    assert final["val_accuracy"] > 0.8 and final["test_accuracy"] > 0.8 and final["n_folds"] == 4

    # test part: 15% of 400 samples, the confusion matrix and per-class scores
    cm = np.array(ctx.attrs["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == 60
    assert np.trace(cm) / cm.sum() == pytest.approx(final["test_accuracy"])
    assert sorted(ctx.attrs["per_class"]) == [str(i) for i in range(10)]

    # the refit model reloads and predicts the same test accuracy; the sidecar describes it
    model = joblib.load(ctx.trial_dir / "model.joblib")
    data = task.load_data()
    assert np.mean(model.predict(data.X_test) == data.y_test) == pytest.approx(final["test_accuracy"])
    card = json.loads((ctx.trial_dir / "model.json").read_text())
    assert card["estimator"] == HGB and card["task_type"] == "classification"
    assert card["estimator_params"]["max_iter"] == 10 and card["estimator_params"]["random_state"] == ctx.seed
    assert card["versions"]["sklearn"] and card["data"]["class_names"][:2] == ["0", "1"]
    assert card["data"]["sizes"] == {"cv": 340, "test": 60}


@pytest.mark.parametrize("dataset, classes", [("iris", 3), ("wine", 3), ("breast_cancer", 2)])
def test_bundled_classification_sets_with_a_scaled_linear_model(make_ctx, dataset: str, classes: int) -> None:
    task = SklearnTask({"estimator": LOGREG, "dataset": dataset, "scale": True})
    ctx = make_ctx()
    final = task.run({"C": 1.0}, ctx)
    assert final["val_accuracy"] > 0.85 and final["test_accuracy"] > 0.85
    assert len(ctx.attrs["per_class"]) == classes
    model = joblib.load(ctx.trial_dir / "model.joblib")
    assert [name for name, _ in model.steps] == ["scale", "model"]  # scaling is part of the saved model


def test_same_test_part_as_the_torch_tasks() -> None:
    from tuner.data import load_dataset

    ours = SklearnTask({"split_seed": 3}).load_data()
    torch_side = load_dataset("digits", split_seed=3, standardize=False)
    np.testing.assert_array_equal(ours.y_test, torch_side.test.y)
    np.testing.assert_array_equal(ours.X_test, torch_side.test.X)
    assert len(ours.y) == len(torch_side.train) + len(torch_side.val)


def test_scale_can_be_tuned_as_a_param_and_reserved_params_are_not_passed(make_ctx) -> None:
    task = SklearnTask({"estimator": LOGREG, "dataset": "iris"})
    model, passed = task.build({"C": 2.0, "scale": True, "epochs": 20, "_n_layers": 2})
    assert [name for name, _ in model.steps] == ["scale", "model"]
    assert "epochs" not in passed and "_n_layers" not in passed and passed["C"] == 2.0
    model, _ = task.build({"C": 2.0, "scale": False})
    assert not hasattr(model, "steps")
    with pytest.raises(SpaceError, match="params.scale"):
        task.build({"scale": "yes"})


def test_csv_classification_with_text_labels(tmp_path: Path, make_ctx) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    labels = np.where(X[:, 0] - X[:, 2] > 0, "up", "down")
    lines = ["a,b,label,c"] + [f"{r[0]},{r[1]},{lab},{r[2]}" for r, lab in zip(X, labels)]
    (tmp_path / "t.csv").write_text("\n".join(lines))
    spec = tmp_path / "study.yaml"
    spec.write_text("task: sklearn\n")
    task = SklearnTask({"estimator": LOGREG, "dataset": "t.csv", "cv": 3}, source=str(spec))
    ctx = make_ctx()
    final = task.run({}, ctx)
    assert final["val_accuracy"] > 0.9
    assert sorted(ctx.attrs["per_class"]) == ["down", "up"]


def test_an_empty_test_part_of_a_csv_fails_the_trial_at_task_args_split(tmp_path: Path, make_ctx) -> None:
    (tmp_path / "t.csv").write_text("a,label\n1,x\n2,x\n3,y\n4,y\n")  # 4 rows: 3 train, 1 val, 0 test
    task = SklearnTask({"estimator": LOGREG, "dataset": str(tmp_path / "t.csv"), "cv": 2}, source="s.yaml")
    with pytest.raises(SpecError) as info:
        task.run({}, make_ctx())
    assert str(info.value) == ("s.yaml: task_args.split: the test part of t.csv is empty (4 samples split "
                               "[0.7, 0.15, 0.15]); give the test part a larger fraction or use more samples")


# ---- regression --------------------------------------------------------------------------------------


def test_regression_on_diabetes(make_ctx) -> None:
    task = SklearnTask({"estimator": HGB_REG, "dataset": "diabetes", "cv": 3})
    assert task.task_type == "regression"
    ctx = make_ctx(metric="val_rmse", direction="minimize")
    final = task.run({"max_iter": 50, "learning_rate": 0.05, "min_samples_leaf": 20}, ctx)
    assert [step for step, _ in ctx.reports] == [1, 2, 3]
    assert all(set(m) == {"val_rmse", "val_mae", "val_r2", "fold_time_s"} for _, m in ctx.reports)
    assert {"test_rmse", "test_mae", "test_r2"} <= set(final) and "test_accuracy" not in final
    assert 30 < final["val_rmse"] < 80 and final["val_mae"] < final["val_rmse"] and final["val_r2"] > 0.2
    assert "confusion_matrix" not in ctx.attrs
    model = joblib.load(ctx.trial_dir / "model.joblib")
    data = task.load_data()
    rmse = math.sqrt(np.mean((model.predict(data.X_test) - data.y_test) ** 2))
    assert rmse == pytest.approx(final["test_rmse"])
    assert len(data.y_test) == 442 - round(0.7 * 442) - round(0.15 * 442)


def test_regression_from_a_csv_column(tmp_path: Path, make_ctx) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(150, 2))
    target = 3 * X[:, 0] - X[:, 1] + rng.normal(scale=0.1, size=150)
    lines = ["x1,price,x2"] + [f"{a},{t},{b}" for (a, b), t in zip(X, target)]
    path = tmp_path / "r.csv"
    path.write_text("\n".join(lines))
    task = SklearnTask({"estimator": "sklearn.linear_model.Ridge", "dataset": str(path), "label": "price", "cv": 3})
    final = task.run({"alpha": 0.1}, make_ctx(metric="val_r2"))
    assert final["val_r2"] > 0.95 and final["test_r2"] > 0.95


def test_a_regression_study_must_not_ask_for_accuracy(make_ctx) -> None:
    task = SklearnTask({"estimator": HGB_REG, "dataset": "diabetes"}, source="studies/r.yaml")
    with pytest.raises(SpecError) as info:
        task.run({}, make_ctx(metric="val_accuracy"))
    assert info.value.path == "metric" and "val_rmse, direction: minimize" in str(info.value)


# ---- pruning, threads, seeds -------------------------------------------------------------------------


def test_pruned_after_a_fold_stops_without_a_model(make_ctx) -> None:
    ctx = make_ctx(prune_at=2)
    with pytest.raises(TrialPruned):
        SklearnTask({"estimator": LOGREG, "dataset": "iris", "scale": True}).run({}, ctx)
    assert [step for step, _ in ctx.reports] == [1, 2]
    assert not (ctx.trial_dir / "model.joblib").exists()


def test_n_jobs_is_capped_to_the_trial_cpus() -> None:
    task = SklearnTask({"estimator": "sklearn.ensemble.RandomForestClassifier"})
    assert task.build({}, n_jobs=2)[0].n_jobs == 2          # unset: the trial's CPUs
    assert task.build({}, n_jobs=1)[0].n_jobs is None       # unset and 1 CPU: scikit-learn's default
    assert task.build({"n_jobs": -1}, n_jobs=2)[0].n_jobs == 2
    assert task.build({"n_jobs": None}, n_jobs=3)[0].n_jobs == 3
    assert task.build({"n_jobs": 8}, n_jobs=2)[0].n_jobs == 2
    assert task.build({"n_jobs": 1}, n_jobs=4)[0].n_jobs == 1
    # no n_jobs parameter: nothing is added
    assert "n_jobs" not in SklearnTask({"estimator": HGB}).build({}, n_jobs=4)[1]


def test_blas_and_openmp_threads_are_limited_during_fit(make_ctx) -> None:
    ThreadProbe.seen_threads.clear()
    ctx = make_ctx()
    ctx.num_threads = 1
    task = SklearnTask({"estimator": "tests.tasks.test_sklearn.ThreadProbe", "dataset": "iris", "cv": 2})
    final = task.run({}, ctx)
    assert final["val_accuracy"] == pytest.approx(1 / 3, abs=0.05)
    assert ThreadProbe.seen_threads and set(ThreadProbe.seen_threads) == {1}
    model = joblib.load(ctx.trial_dir / "model.joblib")
    assert model.n_jobs is None and model.random_state == ctx.seed


def test_same_seed_same_metrics_other_seed_differs(make_ctx) -> None:
    task = SklearnTask({"estimator": "sklearn.ensemble.RandomForestClassifier", "max_samples": 300, "cv": 3})
    params = {"n_estimators": 5, "max_depth": 4}
    ctxs = [make_ctx(seed=seed) for seed in (7, 7, 8)]
    runs = [task.run(params, ctx) for ctx in ctxs]
    assert _untimed(runs[0]) == _untimed(runs[1])
    assert _untimed(runs[0]) != _untimed(runs[2])
    assert [joblib.load(c.trial_dir / "model.joblib").random_state for c in ctxs] == [7, 7, 8]


# ---- errors at spec time (task_args) and at trial time (params) -----------------------------------


@pytest.mark.parametrize("estimator, words", [
    ("SVC", "did you mean sklearn.svm.SVC?"),
    ("sklearn.ensemble.RandomForestClasifier",
     "sklearn.ensemble has no 'RandomForestClasifier'; did you mean sklearn.ensemble.RandomForestClassifier?"),
    ("nosuchpkg.models.Thing", "cannot import nosuchpkg.models"),
    ("collections.OrderedDict", "is not a scikit-learn estimator"),
    ("sklearn.preprocessing.StandardScaler", "has no predict() method"),
    ("sklearn.svm.SVC()", "expected a class path module.Class"),
    (42, "expected a class path module.Class"),
])
def test_bad_estimators_are_spec_errors_at_the_key(estimator: Any, words: str) -> None:
    with pytest.raises(SpecError) as info:
        SklearnTask({"estimator": estimator}, source="studies/x.yaml")
    assert info.value.path == "task_args.estimator"
    assert str(info.value).startswith("studies/x.yaml: task_args.estimator: ")
    assert words in str(info.value)


@pytest.mark.parametrize("args, key, words", [
    ({"estimator": "sklearn.cluster.KMeans"}, "task_args.task_type", "cannot tell whether"),
    ({"estimator": HGB, "task_type": "regression"}, "task_args.task_type", "is a classifier, but task_type is regression"),
    ({"task_type": "ranking"}, "task_args.task_type", "unknown task type"),
    ({"estimator": HGB, "dataset": "diabetes"}, "task_args.dataset", "diabetes is a regression data set"),
    ({"estimator": HGB_REG, "dataset": "iris"}, "task_args.dataset", "iris is a classification data set"),
    ({"dataset": "mnist"}, "task_args.dataset", "unknown data set 'mnist'"),
    ({"dataset": "missing.csv"}, "task_args.dataset", "not found"),
    ({"cv": 1}, "task_args.cv", "expected an integer >= 2"),
    ({"cv": "5"}, "task_args.cv", "expected an integer >= 2"),
    ({"scale": "yes"}, "task_args.scale", "expected true or false"),
    ({"split": [0.5, 0.5]}, "task_args.split", "expected a list of 3 fractions"),
    ({"max_samples": 3}, "task_args.max_samples", "expected an integer >= 10"),
    ({"estimater": HGB}, "task_args.estimater", "did you mean 'estimator'?"),
])
def test_bad_task_args_are_spec_errors_at_the_key(args: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(SpecError) as info:
        SklearnTask(args, source="studies/x.yaml")
    assert info.value.path == key and words in str(info.value)


def test_unknown_params_fail_the_trial_naming_them(make_ctx) -> None:
    task = SklearnTask({"estimator": "sklearn.svm.SVC"}, source="studies/svc.yaml")
    with pytest.raises(SpaceError) as info:
        task.run({"C": 1.0, "gama": 0.1, "learning_rate": 0.1}, make_ctx())
    message = str(info.value)
    assert message.startswith("studies/svc.yaml: search_space.params.gama: sklearn.svm.SVC takes no parameters "
                              "'gama', 'learning_rate'")
    assert "did you mean 'gamma'" in message and "it takes C, break_ties" in message


@pytest.mark.parametrize("param, spec, words", [
    ("bogus_arg", 3, "LogisticRegression takes no parameter 'bogus_arg'; remove or rename it"),
    ("mx_iter", {"int": [50, 200]}, "takes no parameter 'mx_iter'; did you mean 'max_iter'?"),
    ("C", {"float": [-10.0, -1.0]}, "low -10.0 is refused by task sklearn; LogisticRegression's 'C' must be a "
                                    "float in the range (0.0, inf]; change or remove it"),
    ("solver", {"choice": ["saga", "bogus_solver"]}, "choice 'bogus_solver' is refused by task sklearn; "
                                                     "LogisticRegression's 'solver' must be a str among"),
    ("max_iter", {"float": [50.0, 200.0]}, "LogisticRegression's 'max_iter' must be an int"),
])
def test_a_parameter_or_value_the_estimator_refuses_is_a_spec_error_before_any_trial(
        param: str, spec: Any, words: str) -> None:
    """scikit-learn checks its arguments only in fit: without the spec's check, every trial
    that drew such a value failed (11 of them, then max_failures stopped the run)."""
    data = {"name": "s", "task": "sklearn", "task_args": {"estimator": "sklearn.linear_model.LogisticRegression"},
            "search_space": {"params": {"C": {"float": [0.1, 10.0], "log": True}, param: spec}}}
    with pytest.raises(SpaceError) as info:
        spec_from_mapping(data, source="k.yaml")
    assert str(info.value).startswith(f"k.yaml: search_space: params.{param}") and words in str(info.value), info.value
    fine = {**data, "search_space": {"params": {"C": {"float": [0.1, 10.0], "log": True}, "max_iter": 200,
                                                "solver": {"choice": ["lbfgs", "saga"]}, "class_weight": None}}}
    assert spec_from_mapping(fine, source="k.yaml").task == "sklearn"


def test_the_spec_validator_accepts_sklearn_studies(tmp_path: Path) -> None:
    base = {"name": "s", "task": "sklearn", "search_space": {"params": {"C": {"float": [0.1, 10], "log": True}}}}
    spec = spec_from_mapping({**base, "task_args": {"estimator": "sklearn.svm.SVC", "scale": True}})
    assert spec.metrics == ("val_accuracy",) and spec.directions == ("maximize",)
    spec = spec_from_mapping({**base, "task_args": {"estimator": "sklearn.svm.SVR", "dataset": "diabetes"},
                              "metric": "val_rmse", "direction": "minimize"})
    assert spec.metrics == ("val_rmse",) and spec.directions == ("minimize",)
    with pytest.raises(SpecError) as info:
        spec_from_mapping({**base, "task_args": {"estimator": "sklearn.svm.SVQ"}}, source="x.yaml")
    assert info.value.path == "task_args.estimator"


@pytest.mark.parametrize("space, estimator, args", [
    ("sklearn_gbm.yaml", HGB, {}),
    ("sklearn_gbm.yaml", HGB_REG, {"dataset": "diabetes"}),
    ("sklearn_svc.yaml", "sklearn.svm.SVC", {"scale": True}),
    ("sklearn_logreg.yaml", LOGREG, {"scale": True}),
])
def test_shipped_spaces_fit_their_estimators(space: str, estimator: str, args: dict[str, Any], make_ctx) -> None:
    """Every name in the shipped spaces is a constructor argument, and sampled values fit."""
    import optuna

    from tuner.space import SearchSpace

    task = SklearnTask({"estimator": estimator, "cv": 2, "max_samples": 200, **args})
    search_space = SearchSpace.load(ROOT / "search_spaces" / space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(4):
        params = search_space.suggest(study.ask())
        if "max_iter" in params and estimator in (HGB, HGB_REG):
            params["max_iter"] = 5  # values are what is tested here, not long fits
        task.build(params)
    metric = "val_rmse" if task.task_type == "regression" else "val_accuracy"
    final = task.run(params, make_ctx(metric=metric))
    assert math.isfinite(final[metric])


# ---- the data, read once when the spec is validated ----------------------------------------------------


def _study(tmp_path: Path, rows: list[str], **task_args: Any) -> dict[str, Any]:
    """A spec of ``task: sklearn`` on ``x.csv`` (``rows`` under a header) beside ``s.yaml`` in ``tmp_path``
    (the file the spec names as its source: relative data paths are read from its folder)."""
    (tmp_path / "x.csv").write_text("a,b,label\n" + "\n".join(rows) + "\n")
    (tmp_path / "s.yaml").touch()
    return {"name": "s", "task": "sklearn", "task_args": {"estimator": LOGREG, "dataset": "x.csv", **task_args},
            "search_space": {"params": {"C": {"float": [0.1, 10.0], "log": True}}}, "n_trials": 1}


@pytest.mark.parametrize("estimator, rows, cv, words", [
    # 6 rows: 5 in the cross-validated part, 3 of one class and 2 of the other
    (LOGREG, [f"{i},{i % 3},{i % 2}" for i in range(6)], 5,
     "task_args.cv: 5 folds, but no class of the cross-validated part of x.csv (train+val, 5 rows) has 5 samples "
     "(the largest has 3); use cv: 3 or fewer, or more data"),
    ("sklearn.linear_model.Ridge", [f"{i},{i % 3},{i * 0.5}" for i in range(6)], 6,
     "task_args.cv: 6 folds, but the cross-validated part of x.csv (train+val) has 5 rows; use cv: 5 or fewer"),
])
def test_more_folds_than_the_data_holds_is_refused_when_the_spec_is_validated(
        tmp_path: Path, estimator: str, rows: list[str], cv: int, words: str) -> None:
    """Every trial failed with scikit-learn's bare ``ValueError: n_splits=5 cannot be greater than the
    number of members in each class.``, which names no key of the spec."""
    spec = _study(tmp_path, rows, estimator=estimator, cv=cv)
    if estimator != LOGREG:
        spec = {**spec, "search_space": {"params": {"alpha": {"float": [0.1, 10.0], "log": True}}}}
    with pytest.raises(SpecError) as info:
        spec_from_mapping(spec, source=str(tmp_path / "s.yaml"), base_dir=tmp_path)
    assert words in str(info.value), info.value
    fewer = {**spec, "task_args": {**spec["task_args"], "cv": cv - 2}}
    assert spec_from_mapping(fewer, source=str(tmp_path / "s.yaml"), base_dir=tmp_path).task_args["cv"] == cv - 2


def test_a_csv_every_trial_would_refuse_is_refused_when_the_spec_is_validated(tmp_path: Path) -> None:
    spec = _study(tmp_path, [f"{i},{i % 3},0" for i in range(11)], cv=2)
    with pytest.raises(SpecError) as info:
        spec_from_mapping(spec, source=str(tmp_path / "s.yaml"), base_dir=tmp_path)
    assert info.value.path == "task_args.dataset" and "has a single class" in str(info.value)
    _study(tmp_path, ["1,2,0", "3,x,1"] + [f"{i},{i % 3},{i % 2}" for i in range(8)])
    with pytest.raises(SpecError) as info:
        spec_from_mapping(spec, source=str(tmp_path / "s.yaml"), base_dir=tmp_path)
    assert info.value.path == "task_args.dataset" and "line 3: feature 'x' is not a number" in str(info.value)


def test_a_regressor_s_metric_defaults_to_rmse_and_accuracy_is_refused_when_the_spec_is_validated() -> None:
    """validate printed ``metric val_accuracy (maximize)`` for a regressor, and every trial then failed
    with ``metric: task sklearn with the regression estimator ... does not report 'val_accuracy'``."""
    ridge = {"name": "r", "task": "sklearn", "n_trials": 1,
             "task_args": {"estimator": "sklearn.linear_model.Ridge", "dataset": "diabetes"},
             "search_space": {"params": {"alpha": {"float": [0.1, 10.0], "log": True}}}}
    spec = spec_from_mapping(ridge, source="r.yaml")
    assert spec.metrics == ("val_rmse",) and spec.directions == ("minimize",)
    assert spec_from_mapping({**ridge, "metric": "val_r2"}, source="r.yaml").directions == ("maximize",)
    with pytest.raises(SpecError) as info:
        spec_from_mapping({**ridge, "metric": "val_accuracy"}, source="r.yaml")
    assert str(info.value).startswith("r.yaml: metric: task sklearn with the regression estimator "
                                      "sklearn.linear_model.Ridge does not report 'val_accuracy'; use e.g. "
                                      "metric: val_rmse, direction: minimize; it reports val_rmse, "), info.value
    with pytest.raises(SpecError) as info:
        spec_from_mapping({**ridge, "metrics": ["val_rmse", "test_f1"], "directions": ["minimize", "maximize"]},
                          source="r.yaml")
    assert info.value.path == "metrics[1]" and "does not report 'test_f1'" in str(info.value)
    logreg = {**ridge, "task_args": {"estimator": LOGREG, "dataset": "iris"},
              "search_space": {"params": {"C": {"float": [0.1, 10.0], "log": True}}}}
    assert spec_from_mapping(logreg, source="r.yaml").metrics == ("val_accuracy",)
    with pytest.raises(SpecError, match="classification estimator .* does not report 'val_rmse'"):
        spec_from_mapping({**logreg, "metric": "val_rmse"}, source="r.yaml")
