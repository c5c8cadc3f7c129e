"""``task: sklearn``: any scikit-learn estimator, scored by k-fold cross-validation.

A study names the estimator by its class path and tunes its constructor arguments::

    task: sklearn
    task_args:
      estimator: sklearn.ensemble.HistGradientBoostingClassifier   # or sklearn.svm.SVC, ...Regressor, ...
      dataset: digits        # iris, wine, breast_cancer, diabetes (regression), or a .csv/.npz path
      cv: 5
    search_space: ../search_spaces/sklearn_gbm.yaml                 # learning_rate, max_iter, ...

What one trial does, top to bottom:

1. split the data (``split``, ``split_seed``: the same held-out test part as the torch tasks
   for the same data set); the train and val parts are merged and cross-validated on, the test
   part is only used at the end;
2. build the estimator from the trial's params: every param goes to the constructor, except
   ``scale`` (puts a ``StandardScaler`` in front, overriding ``task_args.scale``), reserved
   names of the torch loop (``epochs``) and helpers whose name starts with ``_`` (e.g. a
   ``per`` count); a name the constructor does not take fails the trial, naming it.
   ``random_state`` is the trial's seed unless the space sets it; ``n_jobs`` (when the
   estimator has it) is the trial's CPUs when unset, null or -1, and capped to them otherwise;
   BLAS and OpenMP threads (HistGradientBoosting's) are limited to them too;
3. for fold k = 1..cv (stratified for classification, shuffled ``KFold`` for regression, the
   same folds for every trial): fit, predict the held-out fold, ``ctx.report(k, running mean
   of the fold scores)``; the pruner may stop the trial after any fold;
4. refit on all of train+val, score the test part, store the confusion matrix and per-class
   scores (classification), save the fitted estimator as ``model.joblib`` with a ``model.json``
   sidecar (versions, estimator path, params, data description, metrics).

Metrics ("val" is the cross-validation estimate): classification ``val_accuracy``, ``val_f1``,
``val_precision``, ``val_recall`` (macro averages); regression ``val_rmse``, ``val_mae``
(minimise) and ``val_r2``; the same with ``test_`` for the held-out part; plus ``fold_time_s``
per fold and ``n_folds``, ``fit_time_s`` (mean fold fit), ``refit_time_s``, ``train_time_s``
and ``latency_ms`` (median time to predict a batch of up to 256 test rows) at the end.

A regression study's metric defaults to ``val_rmse`` (minimised), as task mlp's does; asking a
regressor for a classifier's metric (``val_accuracy``), or the other way round, is refused when
the spec is validated.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import json
import os
import platform
import re
import statistics
import time
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

import numpy as np

from tuner.data import (BUNDLED_DATASETS, DEFAULT_SPLIT, check_dataset, load_bundled, make_splits,
                        read_regression_table, read_table, split_sizes)
from tuner._json import jsonable
from tuner.exceptions import SpaceError, SpecError
from tuner.tasks._base import Task, TrialContext, mark, write_artifacts
from tuner.tasks._metrics import confusion_matrix, per_class, regression_scores, scores
from tuner.tasks._param_checks import is_int as _is_int

if TYPE_CHECKING:
    from sklearn.base import BaseEstimator

__all__ = ["SklearnTask", "CLASSIFICATION_METRICS", "REGRESSION_METRICS", "RESERVED_PARAMS", "DEFAULT_ESTIMATOR"]

DEFAULT_ESTIMATOR = "sklearn.ensemble.HistGradientBoostingClassifier"
#: Scores of one fold, reported as ``val_<name>`` (running mean) and ``test_<name>``.
CLASSIFICATION_METRICS = ("accuracy", "f1", "precision", "recall")
REGRESSION_METRICS = ("rmse", "mae", "r2")
#: Reported with every fold besides the scores.
STEP_EXTRAS = ("fold_time_s",)
#: Added to the final metrics.
FINAL_EXTRAS = ("n_folds", "fit_time_s", "refit_time_s", "train_time_s", "latency_ms")
#: Params of the torch training loop that a shared search space may hold; never passed to the estimator.
RESERVED_PARAMS = ("epochs",)
#: Params the task itself reads.
TASK_PARAMS = ("scale",)
TASK_TYPES = ("auto", "classification", "regression")
_LATENCY_ROWS = 256
_CLASS_PATH_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*[.:][A-Za-z_]\w*$")


class SklearnTask(Task):
    """A scikit-learn estimator tuned by cross-validation (see the module docstring).

    ``task_args``: ``estimator`` (class path), ``dataset``, ``task_type`` (auto |
    classification | regression; auto asks the estimator), ``cv`` (folds, >= 2), ``scale``
    (StandardScaler in front), ``split``/``split_seed`` ([train, val, test]; train+val are
    cross-validated on), ``max_samples`` (subsample, for quick runs) and ``label`` (CSV column).
    """

    name = "sklearn"
    #: Train and val are cross-validated on as one; the test part is scored alone.
    needed_parts: ClassVar[tuple[str, ...]] = ("test",)
    args_defaults: ClassVar[Mapping[str, Any]] = {
        "estimator": DEFAULT_ESTIMATOR,
        "dataset": "digits",
        "task_type": "auto",
        "cv": 5,
        "scale": False,
        "split": list(DEFAULT_SPLIT),
        "split_seed": 0,
        "max_samples": None,
        "label": None,
    }

    # ---- validation (spec time: check_args imports the estimator's module, check_data reads the data) ---

    def check_args(self, args: dict[str, Any]) -> None:
        self.estimator_cls = _resolve_estimator(args["estimator"], self)
        self.task_type = self._task_type(args)
        args["task_type"] = self.task_type
        if self.task_type == "regression":
            # The spec's metric when it names none, as for task mlp's regression: the class's
            # val_accuracy made a regressor's study validate, then fail every trial.
            self.default_metric = "val_rmse"  # type: ignore[misc]
            self.default_direction = "minimize"  # type: ignore[misc]
        args["dataset"] = self._check_dataset(args["dataset"])
        self.check_split_args(args)
        cv = args["cv"]
        if not _is_int(cv) or cv < 2:
            raise self.arg_error("cv", f"expected an integer >= 2 (the number of folds), got {cv!r}", "e.g. cv: 5")
        if not isinstance(args["scale"], bool):
            raise self.arg_error("scale", f"expected true or false, got {args['scale']!r}", None)
        self.check_label_arg(args)

    def param_names(self) -> frozenset[str] | None:
        """The estimator's constructor arguments and the task's own (None for a ``**kwargs`` one).

        Checked when the spec is read: a name the estimator does not take fails every trial."""
        accepted = _accepted_params(self.estimator_cls)
        return None if accepted is None else frozenset(accepted | set(RESERVED_PARAMS) | set(TASK_PARAMS))

    def unknown_param(self, name: str, known: frozenset[str], hint: str) -> tuple[str, str]:
        return (f"{self.args['estimator']} takes no parameter {name!r}",
                f"{hint}remove or rename it in the search space; it takes "
                f"{', '.join(sorted(known - set(RESERVED_PARAMS)))}")

    def check_params(self, params: Mapping[str, Any]) -> None:
        """The estimator's own check of each value (scikit-learn's ``_parameter_constraints``).

        scikit-learn checks a constructor argument only in ``fit``, so without this a ``C`` range
        reaching below zero or a misspelt ``solver`` choice failed each trial that drew it. Each
        value is checked alone: constraints between arguments (a solver and a penalty) are
        still the trial's. Estimators without declared constraints are left to the trial.
        """
        constraints = getattr(self.estimator_cls, "_parameter_constraints", None)
        if not isinstance(constraints, dict):
            return
        try:
            from sklearn.utils._param_validation import InvalidParameterError, validate_parameter_constraints
        except ImportError:  # a scikit-learn that moved its private checks: the trial checks
            return
        for name, value in params.items():
            if name not in constraints or name in RESERVED_PARAMS or name in TASK_PARAMS:
                continue
            try:
                validate_parameter_constraints({name: constraints[name]}, {name: value},
                                               caller_name=self.estimator_cls.__name__)
            except InvalidParameterError as exc:
                message = str(exc).strip()
                found = re.search(r"parameter of \S+ (must be .*?)\.? Got ", message)
                problem = (f"{self.estimator_cls.__name__}'s {name!r} {found.group(1)}" if found
                           else message.rstrip("."))
                raise SpaceError(self.source, f"search_space.params.{name}", problem, None) from None
            except Exception:  # noqa: BLE001 - a constraint this check cannot evaluate: the trial's
                continue

    def _task_type(self, args: dict[str, Any]) -> str:
        wanted = args["task_type"]
        if wanted not in TASK_TYPES:
            raise self.arg_error("task_type", f"unknown task type {wanted!r}", f"use one of {', '.join(TASK_TYPES)}")
        kind = _estimator_kind(self.estimator_cls)
        path = args["estimator"]
        if wanted == "auto":
            if kind is None:
                raise self.arg_error("task_type", f"cannot tell whether {path} is a classifier or a regressor",
                                     "set task_type: classification or task_type: regression")
            return kind
        if kind is not None and kind != wanted:
            noun = "classifier" if kind == "classification" else "regressor"
            raise self.arg_error("task_type", f"{path} is a {noun}, but task_type is {wanted}",
                                 f"use task_type: {kind} (or auto), or another estimator")
        return wanted

    def _check_dataset(self, dataset: Any) -> str:
        if isinstance(dataset, str) and dataset in BUNDLED_DATASETS:
            kind = BUNDLED_DATASETS[dataset]
            if kind != self.task_type:
                others = [n for n, k in BUNDLED_DATASETS.items() if k == self.task_type]
                raise self.arg_error("dataset", f"{dataset} is a {kind} data set, but the task is {self.task_type}",
                                     f"use {' or '.join(others)}, a .csv/.npz file, or a "
                                     f"{'classifier' if kind == 'classification' else 'regressor'}")
            return dataset
        from tuner.data import TABULAR_SUFFIXES

        if not isinstance(dataset, (str, Path)) or Path(str(dataset)).suffix.lower() not in TABULAR_SUFFIXES:
            raise self.arg_error("dataset", f"unknown data set {dataset!r}",
                                 f"use one of {', '.join(BUNDLED_DATASETS)} or a path to a .csv or .npz file")
        return check_dataset(dataset, base_dir=_spec_dir(self.source), source=self.source, key="task_args.dataset")

    def check_data(self) -> None:
        """Read the data once and check that it holds ``cv`` folds, before any trial.

        The loader's own refusals (one class, a word among the features, an empty test part) and
        scikit-learn's splitter's (more folds than samples, or than the largest class has) used to
        fail every trial, the latter with a bare ``ValueError`` naming no key of the spec.
        """
        data = self.load_data()
        cv, n = self.args["cv"], len(data.y)
        if self.task_type == "regression":
            if cv > n:
                raise self.arg_error("cv", f"{cv} folds, but the cross-validated part of {data.name} (train+val) "
                                     f"has {n} rows", _fewer_folds(n))
            return
        most = int(np.bincount(np.asarray(data.y, dtype=np.int64)).max()) if n else 0
        if cv > most:  # StratifiedKFold refuses this; fewer members in some classes only warns
            raise self.arg_error("cv", f"{cv} folds, but no class of the cross-validated part of {data.name} "
                                 f"(train+val, {n} rows) has {cv} samples (the largest has {most})",
                                 _fewer_folds(most))

    def metric_names(self) -> list[str]:
        """The metrics a trial of this estimator reports: a regressor's study asking for
        ``val_accuracy`` is refused when the spec is validated (it failed every trial)."""
        return self.reported_metrics()

    def reported_metrics(self) -> list[str]:
        """The metrics a trial of this task (with its estimator's task type) returns."""
        return [*_names(self._scores), *STEP_EXTRAS, *FINAL_EXTRAS]

    @property
    def _scores(self) -> tuple[str, ...]:
        return CLASSIFICATION_METRICS if self.task_type == "classification" else REGRESSION_METRICS

    # ---- one trial ----------------------------------------------------------------------------------

    def run(self, params: dict[str, Any], ctx: TrialContext) -> dict[str, float]:
        from sklearn.base import clone
        from sklearn.model_selection import KFold, StratifiedKFold
        from threadpoolctl import threadpool_limits

        study_metrics = tuple(getattr(ctx, "metrics", None) or (ctx.metric,))
        self._check_study_metrics(study_metrics)
        threads = max(1, int(getattr(ctx, "num_threads", 1) or 1))
        model, estimator_params = self.build(params, seed=int(ctx.seed), n_jobs=threads)
        data = self.load_data()
        classification = self.task_type == "classification"

        step_names = {f"val_{s}" for s in self._scores}
        reporting = len(study_metrics) > 1 or study_metrics[0] in step_names
        splitter = (StratifiedKFold if classification else KFold)(
            n_splits=self.args["cv"], shuffle=True, random_state=self.args["split_seed"])
        fold_scores: dict[str, list[float]] = {s: [] for s in self._scores}
        fit_times: list[float] = []
        start = time.perf_counter()
        mark(ctx, "training_started")
        with threadpool_limits(limits=threads), warnings.catch_warnings():
            # Estimators whose n_jobs is deprecated (LogisticRegression since 1.8) warn that it does nothing.
            warnings.filterwarnings("ignore", message=".*'n_jobs' has no effect.*", category=FutureWarning)
            # ---- cross-validate: one report per fold ----------------------------------------------
            for fold, (fit_idx, val_idx) in enumerate(splitter.split(data.X, data.y), start=1):
                fold_start = time.perf_counter()
                fold_model = clone(model).fit(data.X[fit_idx], data.y[fit_idx])
                fit_times.append(time.perf_counter() - fold_start)
                for name, value in self._score(fold_model, data.X[val_idx], data.y[val_idx], data).items():
                    fold_scores[name].append(value)
                metrics = {f"val_{s}": float(np.mean(v)) for s, v in fold_scores.items()}
                metrics["fold_time_s"] = time.perf_counter() - fold_start
                if reporting:
                    ctx.report(fold, metrics)  # may raise TrialPruned: let it propagate
            cv_time = time.perf_counter() - start

            # ---- refit on train+val, test once -----------------------------------------------------
            refit_start = time.perf_counter()
            model.fit(data.X, data.y)
            refit_time = time.perf_counter() - refit_start
            mark(ctx, "training_ended")
            test = self._score(model, data.X_test, data.y_test, data, record=ctx if classification else None)
            latency_ms = _latency_ms(model, data.X_test if len(data.X_test) else data.X)

        final = {f"val_{s}": float(np.mean(v)) for s, v in fold_scores.items()}
        final.update({f"test_{s}": v for s, v in test.items()})
        final.update({
            "n_folds": float(len(fit_times)),
            "fit_time_s": float(np.mean(fit_times)),
            "refit_time_s": refit_time,
            "train_time_s": cv_time + refit_time,
            "latency_ms": latency_ms,
        })
        ctx.set_attr("cv_scores", {f"val_{s}": v for s, v in fold_scores.items()})
        trial_dir = getattr(ctx, "trial_dir", None)
        if trial_dir is not None:
            write_artifacts(ctx, "model.joblib", lambda: self.save(
                model, Path(trial_dir), estimator_params=estimator_params, params=params, data=data, metrics=final))
        return final

    def _check_study_metrics(self, metrics: Sequence[str]) -> None:
        """The spec's check again, for a task run without a validated spec (from Python)."""
        known = self.reported_metrics()
        for i, metric in enumerate(metrics):
            if metric not in known:
                key = "metric" if len(metrics) == 1 else f"metrics[{i}]"
                raise SpecError(self.source, key, *self.unknown_metric(metric, known))

    def unknown_metric(self, metric: str, known: Sequence[str]) -> tuple[str, str]:
        """Names the estimator and its kind: a classifier's metric asked of a regressor is the usual slip."""
        first = "val_accuracy (maximize)" if self.task_type == "classification" else "val_rmse, direction: minimize"
        return (f"task sklearn with the {self.task_type} estimator {self.args['estimator']} does not report "
                f"{metric!r}", f"use e.g. metric: {first}; it reports {', '.join(known)}")

    def build(self, params: Mapping[str, Any], *, seed: int = 0, n_jobs: int = 1
              ) -> tuple["BaseEstimator", dict[str, Any]]:
        """The unfitted model for ``params`` (a Pipeline with a scaler when scaling) and the
        constructor arguments given to the estimator."""
        estimator_params = {k: v for k, v in params.items()
                            if k not in RESERVED_PARAMS and k not in TASK_PARAMS and not k.startswith("_")}
        accepted = _accepted_params(self.estimator_cls)
        if accepted is not None:
            unknown = sorted(k for k in estimator_params if k not in accepted)
            if unknown:
                close = [m for k in unknown for m in difflib.get_close_matches(k, sorted(accepted), n=1)]
                hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
                names = ", ".join(map(repr, unknown))
                raise SpaceError(self.source, f"search_space.params.{unknown[0]}",
                                 f"{self.args['estimator']} takes no parameter{'s' if len(unknown) > 1 else ''} "
                                 f"{names}",
                                 f"{hint}remove or rename {'them' if len(unknown) > 1 else 'it'} in the search space; "
                                 f"it takes {', '.join(sorted(accepted))}")
        estimator_params = {k: _plain(v) for k, v in estimator_params.items()}
        known = accepted if accepted is not None else _default_params(self.estimator_cls)
        if "random_state" in known:
            estimator_params.setdefault("random_state", seed % 2**32)
        if "n_jobs" in known:
            requested = estimator_params.get("n_jobs")
            if "n_jobs" in estimator_params and (not _is_int(requested) or requested < 1 or requested > n_jobs):
                estimator_params["n_jobs"] = n_jobs  # null and -1 ("all cores") mean the trial's CPUs
            elif "n_jobs" not in estimator_params and n_jobs > 1:
                estimator_params["n_jobs"] = n_jobs  # unset means 1 in scikit-learn: use the trial's CPUs
        estimator = self.estimator_cls(**estimator_params)
        scale = params.get("scale", self.args["scale"])
        if not isinstance(scale, (bool, np.bool_)):
            raise SpaceError(self.source, "search_space.params.scale", f"invalid value {scale!r}", "use true or false")
        if not scale:
            return estimator, estimator_params
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        return Pipeline([("scale", StandardScaler()), ("model", estimator)]), estimator_params

    def load_data(self) -> "_Data":
        """Train+val (cross-validated on) and test, as ``task_args`` say; features are not scaled."""
        a = self.args
        dataset, key = a["dataset"], "task_args.dataset"
        if dataset in BUNDLED_DATASETS:
            table = load_bundled(dataset)
            X, y, class_names, features, name = table.X, table.y, table.class_names, table.feature_names, dataset
        elif self.task_type == "classification":
            X, y, class_names_list, _ = read_table(Path(dataset), label=a["label"], source=self.source, key=key)
            if len(class_names_list) < 2:
                raise SpecError(self.source, key, f"{dataset} has a single class",
                                "a classification data set needs at least 2 labels")
            class_names, features, name = tuple(class_names_list), None, Path(dataset).name
        else:
            X, y = read_regression_table(Path(dataset), label=a["label"], source=self.source, key=key)
            class_names, features, name = None, None, Path(dataset).name
        if class_names is not None:
            splits = make_splits(X, y, name=name, class_names=class_names, split=a["split"],
                                 split_seed=a["split_seed"], max_samples=a["max_samples"], standardize=False)
            X_fit = np.concatenate([splits.train.X, splits.val.X])
            y_fit = np.concatenate([splits.train.y, splits.val.y])
            X_test, y_test = splits.test.X, splits.test.y
        else:
            X_fit, y_fit, X_test, y_test = _random_split(X, y, a["split"], a["split_seed"], a["max_samples"])
        self.check_part_sizes(name, {"train and val": len(y_fit), "test": len(y_test)})
        return _Data(name, X_fit, y_fit, X_test, y_test, class_names,
                     tuple(features) if features is not None else None)

    def _score(self, model: Any, X: np.ndarray, y: np.ndarray, data: "_Data",
               record: TrialContext | None = None) -> dict[str, float]:
        y_pred = model.predict(X)
        if self.task_type == "regression":
            return regression_scores(y, np.asarray(y_pred, dtype=np.float64).reshape(-1))
        assert data.class_names is not None  # classification data always has class names
        n_classes = len(data.class_names)
        cm = confusion_matrix(y, np.asarray(y_pred).astype(np.int64).reshape(-1), n_classes)
        if record is not None:
            record.set_attr("confusion_matrix", cm.tolist())
            record.set_attr("per_class", per_class(cm, data.class_names))
        return scores(cm)

    def save(self, model: Any, trial_dir: Path, *, estimator_params: Mapping[str, Any], params: Mapping[str, Any],
             data: "_Data", metrics: Mapping[str, float]) -> Path:
        """Write ``model.joblib`` (the fitted model, scaler included) and its ``model.json`` sidecar."""
        import joblib
        import sklearn

        import tuner

        trial_dir.mkdir(parents=True, exist_ok=True)
        path = trial_dir / "model.joblib"
        # Both files are written aside, then renamed: a full disk leaves no half-written model behind.
        joblib.dump(model, trial_dir / "model.joblib.tmp", compress=3)
        sidecar = {
            "format": "joblib",
            "file": path.name,
            "estimator": self.args["estimator"],
            "estimator_params": jsonable(estimator_params),
            "params": jsonable(params),
            "pipeline": [name for name, _ in model.steps] if hasattr(model, "steps") else None,
            "task": self.name,
            "task_type": self.task_type,
            "task_args": jsonable(self.args),
            "data": {"dataset": data.name, "n_features": int(data.X.shape[1]),
                     "feature_names": list(data.feature_names) if data.feature_names else None,
                     "class_names": list(data.class_names) if data.class_names else None,
                     "sizes": {"cv": int(len(data.y)), "test": int(len(data.y_test))}},
            "metrics": jsonable(dict(metrics)),
            "versions": {"sklearn": sklearn.__version__, "numpy": np.__version__, "joblib": joblib.__version__,
                         "python": platform.python_version(), "tuner": getattr(tuner, "__version__", None)},
        }
        (trial_dir / "model.json.tmp").write_text(json.dumps(sidecar, indent=2) + "\n")
        os.replace(trial_dir / "model.joblib.tmp", path)
        os.replace(trial_dir / "model.json.tmp", trial_dir / "model.json")
        return path


@dataclass(frozen=True)
class _Data:
    """The cross-validation part (train+val) and the held-out test part of a data set."""

    name: str
    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...] | None
    feature_names: tuple[str, ...] | None


# ---- the estimator class ----------------------------------------------------------------------------


def _resolve_estimator(path: Any, task: SklearnTask) -> type:
    """Import the estimator class at ``path``; every problem is a SpecError at task_args.estimator."""
    fix = "give a class path such as sklearn.ensemble.HistGradientBoostingClassifier or sklearn.svm.SVC"
    if not isinstance(path, str) or not _CLASS_PATH_RE.match(path):
        suggestion = _suggest_class_path(path) if isinstance(path, str) and path.isidentifier() else None
        raise task.arg_error("estimator", f"expected a class path module.Class, got {path!r}",
                             f"did you mean {suggestion}?" if suggestion else fix)
    module_name, class_name = (path.split(":") if ":" in path else path.rsplit(".", 1))
    try:
        module = _import(module_name)
    except ImportError as exc:
        raise task.arg_error("estimator", f"cannot import {module_name}: {exc}", fix) from None
    except Exception as exc:  # noqa: BLE001 - the module raised while importing
        raise task.arg_error("estimator", f"importing {module_name} raised {type(exc).__name__}: {exc}", fix) from None
    cls = getattr(module, class_name, None)
    if cls is None:
        close = difflib.get_close_matches(class_name, [n for n in dir(module) if not n.startswith("_")], n=1)
        suggestion = f"{module_name}.{close[0]}" if close else _suggest_class_path(class_name)
        raise task.arg_error("estimator", f"{module_name} has no {class_name!r}",
                             f"did you mean {suggestion}?" if suggestion else fix)
    from sklearn.base import BaseEstimator

    if not (isinstance(cls, type) and issubclass(cls, BaseEstimator)):
        raise task.arg_error("estimator", f"{path} is not a scikit-learn estimator (not a BaseEstimator subclass)",
                             fix)
    missing = [m for m in ("fit", "predict") if not callable(getattr(cls, m, None))]
    if missing:
        raise task.arg_error("estimator", f"{path} has no {missing[0]}() method",
                             "use a classifier or regressor (transformers and clusterers cannot be scored)")
    return cls


@lru_cache(maxsize=None)
def _import(module_name: str) -> Any:
    return importlib.import_module(module_name)


def _suggest_class_path(name: str) -> str | None:
    """``SVC`` -> ``sklearn.svm.SVC`` (only on the error path: it imports all of scikit-learn)."""
    try:
        from sklearn.utils.discovery import all_estimators

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = {n: c for n, c in all_estimators()}
    except Exception:  # noqa: BLE001 - a suggestion is a nicety
        return None
    close = difflib.get_close_matches(name, sorted(found), n=1, cutoff=0.8)
    if not close:
        return None
    cls = found[close[0]]
    module = cls.__module__.split("._")[0]  # the public module: sklearn.ensemble, not ..._gb
    return f"{module}.{cls.__name__}"


def _estimator_kind(cls: type) -> str | None:
    """``"classification"``, ``"regression"`` or None, from the class alone."""
    from sklearn.base import ClassifierMixin, RegressorMixin

    if issubclass(cls, ClassifierMixin):
        return "classification"
    if issubclass(cls, RegressorMixin):
        return "regression"
    legacy = getattr(cls, "_estimator_type", None)  # third-party estimators written before sklearn 1.6
    return {"classifier": "classification", "regressor": "regression"}.get(legacy if isinstance(legacy, str) else "")


def _accepted_params(cls: type) -> set[str] | None:
    """The constructor's argument names; None when it takes ``**kwargs`` (anything goes)."""
    parameters = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    return {n for n, p in parameters.items() if n != "self" and p.kind is not inspect.Parameter.VAR_POSITIONAL}


def _default_params(cls: type) -> set[str]:
    """Parameter names of a ``**kwargs`` estimator (XGBoost-style), from a default instance if it builds."""
    try:
        return set(cls().get_params())
    except Exception:  # noqa: BLE001 - then tuner sets neither random_state nor n_jobs
        return set()


# ---- data, scores, timing ---------------------------------------------------------------------------


def _random_split(X: np.ndarray, y: np.ndarray, split: Sequence[float], split_seed: int,
                  max_samples: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shuffle with ``split_seed`` (after an optional subsample) and cut off the test fraction."""
    rng = np.random.default_rng(split_seed)
    if max_samples is not None and max_samples < len(y):
        keep = np.sort(rng.permutation(len(y))[:max_samples])
        X, y = X[keep], y[keep]
    order = rng.permutation(len(y))
    n_train, n_val, _ = split_sizes(len(y), split)
    n_fit = n_train + n_val
    fit, test = np.sort(order[:n_fit]), np.sort(order[n_fit:])
    return X[fit], y[fit], X[test], y[test]


def _latency_ms(model: Any, X: np.ndarray, repeats: int = 5) -> float:
    """Median milliseconds of ``model.predict`` on one batch of up to 256 rows (after one warm-up)."""
    batch = X[:_LATENCY_ROWS]
    model.predict(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(batch)
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def _fewer_folds(most: int) -> str:
    """The fix for more folds than the data allows (``most``: the most folds it allows)."""
    return f"use cv: {most} or fewer, or more data" if most >= 2 else "give the data set more samples"


def _names(scores: Sequence[str]) -> list[str]:
    return [f"{prefix}_{s}" for prefix in ("val", "test") for s in scores]


def _plain(value: Any) -> Any:
    """numpy scalars -> Python; lists stay lists (sklearn takes them for tuple params)."""
    return value.item() if isinstance(value, np.generic) else value


def _spec_dir(source: str) -> Path | None:
    path = Path(source)
    return path.parent if path.is_file() else None
