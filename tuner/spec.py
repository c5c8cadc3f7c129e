"""The study spec: one validated, typed object that the rest of tuner reads.

A spec comes from a YAML file (``studies/*.yaml``), a mapping given from Python, or either
of those with command-line overrides applied. Validation is declarative: each field has a
checker, and every problem is reported as ``file: key.path: problem; fix`` through
:class:`~tuner.exceptions.SpecError`, so a typo never surfaces as a traceback deep inside a
run.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from tuner._yaml import load_yaml_file
from tuner.engine._plugins import default_pruner
from tuner.exceptions import SpaceError, SpecError

__all__ = ["StudySpec", "Resources", "load_spec", "spec_from_mapping", "apply_overrides", "check_task_storage",
           "SAMPLERS", "PRUNERS"]

SPEC_VERSION = 1

#: Samplers by spec name; the engine maps each to an Optuna sampler class.
SAMPLERS = ("tpe", "random", "grid", "cmaes", "gp", "qmc", "nsga2")
#: Samplers that can optimise several objectives at once.
MULTI_OBJECTIVE_SAMPLERS = ("tpe", "random", "grid", "qmc", "nsga2", "gp")
#: Pruners by spec name; ``asha`` and ``successive_halving`` are the same algorithm.
PRUNERS = ("none", "median", "percentile", "asha", "successive_halving", "hyperband")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr|d)?\s*$")
_DURATION_UNITS = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400}
_MAX_TRIALS = 10_000_000
# Longer than a year is not a time limit; beyond ~292 years Python's own waits overflow.
_MAX_DURATION_S = 366 * 86400


@dataclass(frozen=True)
class Resources:
    """What one trial asks Ray for; fractions of a GPU pack several trials on one device."""

    cpus: float = 1.0
    gpus: float = 0.0


@dataclass(frozen=True)
class StudySpec:
    """A validated study spec. Paths are absolute; the search space is already loaded."""

    name: str
    search_space: Any  # tuner.space.SearchSpace (typed loosely to keep import light)
    task: str | None = None
    task_args: dict[str, Any] = field(default_factory=dict)
    objective: str | None = None
    metrics: tuple[str, ...] = ("value",)
    directions: tuple[str, ...] = ("minimize",)
    n_trials: int = 20
    timeout: float | None = None
    trial_timeout: float | None = None
    concurrency: int = 1
    resources: Resources = field(default_factory=Resources)
    sampler: str = "tpe"
    sampler_args: dict[str, Any] = field(default_factory=dict)
    pruner: str = "asha"  # why: the comments above _PRUNER_DEFAULTS and _SAMPLER_PRUNERS in tuner/engine/_plugins.py
    pruner_args: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    max_failures: int = 10
    keep_checkpoints: int | None = 5   # checkpoints of the best K trials are kept; None: all
    #: Points to try first (each a mapping of some or all params, in the space's names): a known
    #: good configuration, the current baseline. Enqueued once per study; the sampler fills in the rest.
    enqueue: tuple[dict[str, Any], ...] = ()
    #: Run again, with the same parameters, the trials a run left unfinished (a Ctrl-C, `tuner
    #: stop`, ``max_failures`` reached by other trials, a run that was killed), when the study resumes.
    rerun_unfinished: bool = True
    storage: str | None = None
    artifacts_dir: str | None = None
    description: str = ""
    source: str = "<spec>"
    base_dir: str = "."
    raw: dict[str, Any] = field(default_factory=dict, compare=False)
    #: What validation changed or decided that the spec's text does not show (a range's high
    #: off its step grid, n_trials capped at a grid's size): ``validate`` and the run header
    #: print them (``plugins_text``), so that nothing changes silently. Not stored with the study.
    notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def is_multi_objective(self) -> bool:
        return len(self.metrics) > 1

    @property
    def metric(self) -> str:
        return self.metrics[0]

    @property
    def direction(self) -> str:
        return self.directions[0]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form stored with the study, so that anyone can see what ran."""
        data = asdict(replace(self, search_space=None, raw={}, notes=()))
        data.pop("raw")
        data.pop("notes")
        data["search_space"] = self.search_space.to_dict()
        data["resources"] = asdict(self.resources)
        data["metrics"] = list(self.metrics)
        data["directions"] = list(self.directions)
        data["version"] = SPEC_VERSION
        return data


# --------------------------------------------------------------------------- loading


# What other libraries call the built-in tasks' parameters (difflib finds typos, not synonyms).
_OTHER_NAMES = {"learning_rate": "lr", "learningrate": "lr", "num_layers": "n_layers", "layers": "n_layers",
                "hidden_size": "width", "hidden_units": "width", "units": "width", "num_epochs": "epochs",
                "n_epochs": "epochs", "max_epochs": "epochs", "bs": "batch_size", "wd": "weight_decay",
                "drop_rate": "dropout", "dropout_rate": "dropout", "patience": "early_stopping_patience",
                "clip": "grad_clip", "gradient_clip_val": "grad_clip", "max_grad_norm": "grad_clip",
                "lr_schedule": "schedule", "scheduler": "schedule", "warmup": "warmup_frac",
                "warmup_ratio": "warmup_frac", "smoothing": "label_smoothing", "kernel_size": "kernel"}


def _check_task_reads(task_obj: Any, task: str, space: Any) -> None:
    """Refuse a parameter the task never reads (``Task.param_names`` says why); ``_``-names are the user's own."""
    import difflib

    known = task_obj.param_names()
    if known is None:
        return
    for source, path, name in space.declared_params():
        if name in known or name.startswith("_"):
            continue
        close = [_OTHER_NAMES[name]] if _OTHER_NAMES.get(name) in known else \
            difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise SpaceError(source, path, *task_obj.unknown_param(name, known, hint))


def _check_task_accepts(task_obj: Any, task: str, space: Any) -> None:
    """Refuse a choice, range end or fixed value the task would refuse in every trial that draws it."""
    for source, path, name, what, value in space.extreme_values():
        try:
            task_obj.check_params({name: value})
        except SpaceError as exc:
            raise SpaceError(source, path, f"{what} {value!r} is refused by task {task}",
                             f"{exc.fix or exc.problem}; change or remove it") from None


def load_spec(path: str | Path, overrides: Mapping[str, Any] | None = None, *,
              default_objective: str | None = None) -> StudySpec:
    """Read, validate and return the spec in ``path``, with ``overrides`` (CLI flags) applied.

    ``default_objective`` names a function passed in (``tuner.run(path, objective=fn)`` passes
    its ``module:name``): it stands for the spec's ``objective:``, or replaces it, so that the
    study records the function that ran (a spec without ``task:``)."""
    p = Path(path)
    source = str(path)
    if not _is_file(p):
        raise SpecError(source, "<file>", "no such spec file", "check the path (specs live in studies/)")
    data = load_yaml_file(p, source=source, error=SpecError)
    if not isinstance(data, dict):
        raise SpecError(source, "<root>", f"the spec must be a mapping, got {_kind(data)}", "write `key: value` lines")
    return spec_from_mapping(data, source=source, base_dir=p.resolve().parent, overrides=overrides,
                             default_objective=default_objective)


def spec_from_mapping(
    data: Mapping[str, Any],
    *,
    source: str = "<spec>",
    base_dir: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    default_objective: str | None = None,
) -> StudySpec:
    """Validate a spec given as a mapping (from Python or a parsed file); ``default_objective`` as in
    :func:`load_spec`."""
    if not isinstance(data, Mapping):
        raise SpecError(source, "<root>", f"the spec must be a mapping, got {_kind(data)}", "pass a dict")
    merged = dict(data)
    if overrides:
        merged = apply_overrides(merged, overrides, source=source)
    passed = None
    # Replaced, not only filled in: the spec's `objective:` did not run, and a study that stored
    # it named a function its trials never ran (tuner show, the resume check).
    if default_objective is not None and merged.get("task") is None:
        merged["objective"] = passed = default_objective
    # A storage URL typed on the command line (--set storage=...) is relative to where it was
    # typed, as --storage and $TUNER_STORAGE are; one written in the spec, to the spec's folder.
    typed_here = bool(overrides) and overrides.get("storage") not in (None, SET_NULL)  # type: ignore[union-attr]
    try:
        return _Validator(merged, source, Path(base_dir) if base_dir else Path.cwd(), storage_from_cwd=typed_here,
                          passed_objective=passed).build()
    except SpecError as exc:
        raise _blame_the_override(exc, overrides or {}) from None


def _blame_the_override(exc: SpecError, overrides: Mapping[str, Any]) -> SpecError:
    """``exc``, saying so when the value it refuses came from the command line (``--pruner median``,
    ``--set task_args.x=1``): "studies/mlp_pareto.yaml: pruner: ... set pruner: none" sent users to
    a file that already said ``pruner: none``."""
    given = [key for key, value in overrides.items() if value is not None and (
        key == exc.path or exc.path.startswith(key + ".") or key.startswith(exc.path + "."))]
    if not given or type(exc) is not SpecError:
        return exc
    key = max(given, key=len)
    value = overrides[key]
    return SpecError(exc.source, exc.path, f"{exc.problem} ({key}={_short(value)} given on the command line)", exc.fix)


def check_task_storage(spec: StudySpec, storage_url: str) -> None:
    """Raise :class:`SpecError` for a study the spec's built-in task would look up in the storage at
    ``storage_url`` and not find (``Task.check_storage``: ``pretrained: {study: NAME}``).

    Not part of :func:`spec_from_mapping`, which knows no storage (``--storage`` is the run's): called
    by ``tuner validate`` and by the run before it writes anything, so that such a spec is one line,
    not a failure in every trial.
    """
    if spec.task is None:
        return
    from tuner.tasks import get_task

    get_task(spec.task, source=spec.source)(spec.task_args, source=spec.source).check_storage(storage_url)


class _SetNull:
    """An override that sets its key to null (``--set KEY=null``).

    None in an override means "not given" (a flag left out), so a null typed on purpose needs a
    value of its own; the key then reads as it would with ``KEY: null`` in the spec (for most keys,
    tuner's default: ``trial_timeout``, ``task_args.pretrained``, ...), and where null is not
    allowed the validator says so.
    """

    def __repr__(self) -> str:
        return "null"


SET_NULL: Any = _SetNull()


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any], *, source: str) -> dict[str, Any]:
    """Apply ``key.path -> value`` overrides (flags and ``--set``) to a raw spec mapping."""
    out: dict[str, Any] = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in data.items()}
    for dotted, value in overrides.items():
        if value is None:
            continue
        if value is SET_NULL:
            value = None
        keys = dotted.split(".")
        node = out
        for key in keys[:-1]:
            child = node.get(key)
            if isinstance(child, str) and key in ("sampler", "pruner"):
                child = {"name": child}
            if isinstance(child, str) and key == "search_space" and node is out:
                # `search_space: file.yaml` with --set search_space.params.x=...: the file stays,
                # and the override lands over it (it used to replace the whole space without a word)
                child = {"include": [child]}
            if not isinstance(child, Mapping):
                child = {}
            child = dict(child)
            node[key] = child
            node = child
        node[keys[-1]] = value
        if keys == ["metric"]:
            out.pop("metrics", None)
            out.pop("directions", None)
    return out


# --------------------------------------------------------------------------- validation

_TOP_LEVEL = {
    "version", "name", "description", "task", "task_args", "objective", "search_space", "metric",
    "direction", "metrics", "directions", "n_trials", "timeout", "trial_timeout", "concurrency",
    "resources", "sampler", "pruner", "seed", "max_failures", "storage", "artifacts_dir", "keep_checkpoints",
    "enqueue", "rerun_unfinished",
}

#: At most this many points in ``enqueue``: each becomes a trial row when the run starts, and
#: the record of what was enqueued is rewritten after each (2,000 points took 10.5 s on SQLite).
_MAX_ENQUEUE = 1_000


class _Validator:
    """Turns a raw mapping into a :class:`StudySpec`, failing on the first problem with its location."""

    def __init__(self, data: dict[str, Any], source: str, base_dir: Path, *, storage_from_cwd: bool = False,
                 passed_objective: str | None = None) -> None:
        self.data = data
        self.source = source
        self.base_dir = base_dir
        self.storage_from_cwd = storage_from_cwd
        # The name of a function passed in with the spec (tuner.run(spec, objective=fn)): a label,
        # not a reference to import (a closure or a lambda has none), since the function itself travels.
        self.passed_objective = passed_objective

    def fail(self, path: str, problem: str, fix: str | None = None) -> SpecError:
        return SpecError(self.source, path, problem, fix)

    def build(self) -> StudySpec:
        d = self.data
        unknown = sorted(set(map(str, d)) - _TOP_LEVEL)
        if unknown:
            key = unknown[0]
            raise self.fail(key, "unknown key", _suggest(key, _TOP_LEVEL))
        version = d.get("version", SPEC_VERSION)
        if version != SPEC_VERSION:
            raise self.fail("version", f"unsupported spec version {version!r}", f"use version: {SPEC_VERSION}")
        name = self._name()
        task, objective = self._task_or_objective()
        task_args = self._mapping("task_args", default={})
        task_obj = None
        if task is not None:
            from tuner.tasks import get_task

            # Cheap (no data loading, no torch import): catches a bad task_arg before any trial
            # runs, and the configured task knows which metrics it reports (e.g. regression).
            task_obj = get_task(task, source=self.source, path="task")(task_args, source=self.source)
        elif task_args:
            raise self.fail("task_args", "task_args is only for built-in tasks", "pass settings to your objective through the search space as fixed values")
        metrics, directions = self._metrics(task, task_obj)
        space = self._space()
        if task_obj is not None:
            _check_task_reads(task_obj, task, space)
            _check_task_accepts(task_obj, task, space)
        sampler, sampler_args = self._plugin("sampler", SAMPLERS, "tpe")
        # A pruner block without a name keeps asha (its args are asha's); no block at all gets the
        # sampler's default pruner.
        pruner, pruner_args = self._plugin("pruner", PRUNERS, "asha" if "pruner" in d else default_pruner(sampler))
        if pruner == "successive_halving":
            pruner = "asha"
        if len(metrics) > 1:
            if sampler not in MULTI_OBJECTIVE_SAMPLERS:
                raise self.fail("sampler", f"{sampler} cannot optimise several metrics",
                                f"use one of {', '.join(MULTI_OBJECTIVE_SAMPLERS)} (nsga2 is made for it)")
            if pruner != "none" and "pruner" in d:
                raise self.fail("pruner", "pruning is not supported for multi-objective studies", "set pruner: none")
            pruner, pruner_args = "none", {}
        notes = list(space.notes())
        n_trials = self._int("n_trials", default=20, low=1, high=_MAX_TRIALS)
        if sampler == "grid":
            # raises SpaceError with the fix when the space is not finite
            n_trials = self._grid_trials(len(space.grid()), n_trials, notes)
        concurrency = self._int("concurrency", default=1, low=1, high=100_000)
        resources = self._resources()
        spec = StudySpec(
            name=name,
            description=self._str("description", default=""),
            task=task,
            task_args=task_args,
            objective=objective,
            search_space=space,
            metrics=metrics,
            directions=directions,
            n_trials=n_trials,
            timeout=self._duration("timeout"),
            trial_timeout=self._duration("trial_timeout"),
            concurrency=concurrency,
            resources=resources,
            sampler=sampler,
            sampler_args=sampler_args,
            pruner=pruner,
            pruner_args=pruner_args,
            seed=self._seed(),
            max_failures=self._int("max_failures", default=10, low=0, high=_MAX_TRIALS),
            keep_checkpoints=self._keep_checkpoints(),
            enqueue=self._enqueue(space, sampler, n_trials),
            rerun_unfinished=self._bool("rerun_unfinished", default=True),
            storage=self._storage(),
            artifacts_dir=self._str("artifacts_dir", default=None),
            source=self.source,
            base_dir=str(self.base_dir),
            raw=dict(d),
            notes=tuple(notes),
        )
        from tuner.engine._plugins import check_plugins

        check_plugins(spec)  # argument values Optuna rejects fail here, not after Ray has started
        if task_obj is not None:
            task_obj.check_data()  # last: it reads files, and every cheaper mistake is said first
        return spec

    # -- fields

    def _name(self) -> str:
        name = self.data.get("name")
        if name is None:
            raise self.fail("name", "missing", "give the study a name, e.g. `name: my_study`")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise self.fail("name", f"invalid study name {_short(name)}",
                            "use 1-128 letters, digits, '_', '-' or '.', starting with a letter or digit")
        return name

    def _task_or_objective(self) -> tuple[str | None, str | None]:
        task, objective = self.data.get("task"), self.data.get("objective")
        if task is None and objective is None:
            raise self.fail("task", "missing", "set `task:` to a built-in task or `objective:` to module:function")
        if task is not None and objective is not None:
            raise self.fail("objective", "both task and objective are set", "keep only one of them")
        if task is not None:
            if not isinstance(task, str):
                raise self.fail("task", f"expected a task name, got {_kind(task)}", "write e.g. `task: mlp`")
            from tuner.tasks import get_task

            get_task(task, source=self.source, path="task")  # unknown name -> SpecError listing tasks
            return task, None
        if objective is not None and objective == self.passed_objective:
            return None, objective
        if not isinstance(objective, str) or ":" not in objective:
            raise self.fail("objective", f"expected 'package.module:function' or 'path/file.py:function', got {_short(objective)}",
                            "write e.g. `objective: my_pkg.train:objective`")
        module, _, func = objective.rpartition(":")
        if not module or not func.isidentifier():
            raise self.fail("objective", f"invalid objective reference {objective!r}",
                            "write e.g. `objective: my_pkg.train:objective`")
        if module.endswith(".py"):
            path = Path(module)
            if not path.is_absolute():
                path = self.base_dir / path if _is_file(self.base_dir / path) else Path.cwd() / path
            if not _is_file(path):
                raise self.fail("objective", f"file {module} not found", "give a path relative to the spec file or the working directory")
            objective = f"{path.resolve()}:{func}"
        self._check_importable(objective)
        return None, objective

    def _check_importable(self, ref: str) -> None:
        """Import the objective now: a typo must fail here with exit 2, not in every trial."""
        import os

        from tuner.engine._worker import resolve_objective

        try:
            resolve_objective(ref, extra_paths=[os.getcwd(), str(self.base_dir)])
        except SpecError:
            raise
        except (ImportError, AttributeError) as exc:
            raise self.fail("objective", f"cannot import {ref}: {exc}",
                            "check the module path (it is imported from the working directory and the spec's folder)") from None
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's module raised (or exited) while importing
            raise self.fail("objective", f"importing {ref} raised {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                            "fix the error in that module") from None

    def _metrics(self, task: str | None, task_obj: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
        d = self.data
        if "metrics" in d or "directions" in d:
            if "metric" in d or "direction" in d:
                raise self._mixed_metric_keys()
            metrics, directions = d.get("metrics"), d.get("directions")
            if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) and m for m in metrics):
                raise self.fail("metrics", "expected a non-empty list of metric names", "e.g. metrics: [val_accuracy, n_params]")
            if len(set(metrics)) != len(metrics):
                raise self.fail("metrics", "a metric is listed twice", "list each metric once")
            if directions is None:
                raise self.fail("directions", "missing", f"give one direction per metric, e.g. directions: [{', '.join(['maximize'] * len(metrics))}]")
            if not isinstance(directions, list) or len(directions) != len(metrics):
                raise self.fail("directions", "expected one direction per metric", f"give {len(metrics)} directions")
            dirs = tuple(self._direction(f"directions[{i}]", x) for i, x in enumerate(directions))
            names = tuple(metrics)
        else:
            default_metric, default_direction = "value", "minimize"
            if task_obj is not None:
                default_metric, default_direction = task_obj.default_metric, task_obj.default_direction
            metric = d.get("metric", default_metric)
            if not isinstance(metric, str) or not metric:
                raise self.fail("metric", f"expected a metric name, got {_short(metric)}", "e.g. metric: val_accuracy")
            names = (metric,)
            if task_obj is not None and "direction" not in d:
                # A built-in task's metric says which way is better (val_r2 up, val_loss down)
                # even when it is not the task's default metric.
                default_direction = _natural_direction(metric) or default_direction
            dirs = (self._direction("direction", d.get("direction", default_direction)),)
        if task_obj is not None:
            known = task_obj.metric_names()
            for i, m in enumerate(names):
                if m not in known:
                    key = "metric" if "metric" in d or "metrics" not in d else f"metrics[{i}]"
                    said = task_obj.unknown_metric(m, known) or (f"task {task} does not report {m!r}",
                                                                 _suggest(m, known))
                    raise self.fail(key, *said)
            self._check_selection(names, dirs, known)
        return names, dirs

    def _check_selection(self, names: tuple[str, ...], dirs: tuple[str, ...], known: Any) -> None:
        """Refuse a built-in task's metric the study must not select on, or one turned the wrong way.

        A ``test_*`` metric ranks trials by the held-out test part, which then no longer estimates
        anything: the model card and ``tuner best`` presented as a held-out score what had been
        the selection criterion. A direction against the metric's meaning (``val_accuracy``
        minimized) is a typo whose cost is silent: the worst trial ranks best, and each trial
        keeps its worst epoch's weights."""
        several = "metrics" in self.data
        for i, (metric, direction) in enumerate(zip(names, dirs)):
            if metric.startswith("test_"):
                val = "val_" + metric[len("test_"):]
                raise self.fail(f"metrics[{i}]" if several else "metric",
                                f"{metric} is measured on the test part, which is held out to estimate the chosen "
                                "model: selecting on it leaks the test part into the choice",
                                f"use {val}" if val in known else "use a val_ metric")
            natural = _natural_direction(metric)
            if natural and natural != direction:
                better = "higher" if natural == "maximize" else "lower"
                epochs = ", keeping each one's worst epoch" if metric.startswith("val_") else ""
                raise self.fail(f"directions[{i}]" if several else "direction",
                                f"{metric} is better {better}, and {direction} would rank the worst trials best{epochs}",
                                f"use {natural}" + ("" if several else " (or leave direction out)"))

    def _mixed_metric_keys(self) -> SpecError:
        """The error for a spec with keys of one objective (``metric``, ``direction``) and of several
        (``metrics``, ``directions``), naming the keys the file has: ``directions`` beside
        ``metric`` used to be reported as "both metric and metrics are set", a key not in the file."""
        d = self.data
        fix = "use `metric` with `direction` (one objective), or `metrics` with `directions` (several)"
        for one, several in (("metric", "metrics"), ("direction", "directions")):
            if one in d and several in d:
                return self.fail(several, f"both `{one}` and `{several}` are set", fix)
        if "directions" in d:  # with metric
            return self.fail("directions", "`directions` goes with `metrics`, and the spec has `metric`",
                             "use `direction` with `metric` (one objective), or `metrics` with `directions` (several)")
        return self.fail("direction", "`direction` goes with `metric`, and the spec has `metrics`",  # with metrics
                         "use `directions` (one per metric) with `metrics`, or `metric` with `direction` (one objective)")

    def _direction(self, path: str, value: Any) -> str:
        aliases = {"maximize": "maximize", "max": "maximize", "minimize": "minimize", "min": "minimize"}
        if not isinstance(value, str) or value.lower() not in aliases:
            raise self.fail(path, f"invalid direction {_short(value)}", "use maximize or minimize")
        return aliases[value.lower()]

    def _space(self) -> Any:
        from tuner.space import SearchSpace

        ref = self.data.get("search_space")
        if ref is None:
            raise self.fail("search_space", "missing", "give a path (search_spaces/x.yaml) or an inline mapping with `params:`")
        if isinstance(ref, Mapping):
            return SearchSpace.from_mapping(ref, source=f"{self.source}: search_space", base_dir=self.base_dir)
        if not isinstance(ref, str):
            raise self.fail("search_space", f"expected a path or a mapping, got {_kind(ref)}",
                            "give a path (search_spaces/x.yaml) or an inline mapping with `params:`")
        path = resolve_space_path(ref, self.base_dir)
        if path is None:
            raise self.fail("search_space", f"file {ref} not found",
                            "give a path relative to the spec file, the working directory or search_spaces/")
        return SearchSpace.load(path)

    def _plugin(self, key: str, allowed: tuple[str, ...], default: str) -> tuple[str, dict[str, Any]]:
        value = self.data.get(key, default)
        args: dict[str, Any] = {}
        if isinstance(value, Mapping):
            extra = set(value) - {"name", "args"}
            if extra:
                bad = sorted(map(str, extra))[0]
                raise self.fail(f"{key}.{bad}", "unknown key", f"write {key}: {{name: ..., args: {{...}}}}")
            args = value.get("args") or {}
            if not isinstance(args, Mapping):
                raise self.fail(f"{key}.args", f"expected a mapping, got {_kind(args)}", f"write {key}: {{name: ..., args: {{arg: value}}}}")
            args = dict(args)
            value = value.get("name", default)
        if value is None:  # pruner: null is no pruner; sampler: null, tuner's default (as `--set sampler=null`)
            value = "none" if key == "pruner" else default
        if not isinstance(value, str) or value.lower() not in allowed:
            raise self.fail(key if not isinstance(self.data.get(key), Mapping) else f"{key}.name",
                            f"unknown {key} {_short(value)}", f"use one of {', '.join(allowed)}")
        name = value.lower()
        bad_args = _check_plugin_args(key, name, args)
        if bad_args:
            arg, allowed_args = bad_args
            raise self.fail(f"{key}.args.{arg}", f"{name} takes no argument {arg!r}",
                            f"allowed: {', '.join(allowed_args) or 'none'}")
        return name, args

    def _grid_trials(self, points: int, n_trials: int, notes: list[str]) -> int:
        """``n_trials``, capped at the grid's size: each point is tried once, so a larger target
        could never be reached, and the study would read as unfinished (``9/20``, ``stopped``) forever."""
        if n_trials <= points:
            return n_trials
        given = f"n_trials {n_trials}" + ("" if "n_trials" in self.data else " (the default)")
        notes.append(f"grid: {points} point{'s' if points != 1 else ''}, so {given} runs {points}")
        return points

    def _storage(self) -> str | None:
        """The spec's storage URL, a relative SQLite path made absolute from the spec's folder, as
        its other paths are: the same study whatever folder the run starts in."""
        from tuner.storage import anchor_sqlite_url

        url = self._str("storage", default=None)
        if url is None:
            return None
        anchored = anchor_sqlite_url(url, Path.cwd() if self.storage_from_cwd else self.base_dir)
        from tuner.storage import sqlite_path

        here, there = sqlite_path(anchor_sqlite_url(url, Path.cwd())), sqlite_path(anchored)
        if there is not None and here is not None and here != there and here.exists() and not there.exists():
            # Before 2026-12-07 this path was read from the working directory: do not start an
            # empty study beside the one the earlier runs filled.
            raise self.fail("storage", f"{url} is read from the spec's folder ({there}), which has no such file, "
                            f"while {here} exists (where tuner read it before 2026-12-07)",
                            f"write storage: sqlite:///{here} to keep that database, or move it to {there}")
        return anchored

    def _resources(self) -> Resources:
        raw = self.data.get("resources", {}) or {}
        if not isinstance(raw, Mapping):
            raise self.fail("resources", f"expected a mapping, got {_kind(raw)}", "e.g. resources: {cpus: 1, gpus: 0.25}")
        unknown = set(raw) - {"cpus", "gpus"}
        if unknown:
            raise self.fail(f"resources.{sorted(map(str, unknown))[0]}", "unknown key", "allowed: cpus, gpus")
        cpus = self._number(raw.get("cpus", 1), "resources.cpus", low=0.0, high=4096)
        gpus = self._number(raw.get("gpus", 0), "resources.gpus", low=0.0, high=1024)
        if cpus == 0 and gpus == 0:
            raise self.fail("resources", "a trial must ask for some CPU or GPU", "set cpus > 0 (fractions allowed)")
        if gpus > 1 and gpus != int(gpus):
            raise self.fail("resources.gpus", f"{gpus} GPUs per trial", "use a fraction below 1 or a whole number")
        return Resources(cpus=cpus, gpus=gpus)

    def _seed(self) -> int | None:
        seed = self.data.get("seed")
        if seed is None:
            return None
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            raise self.fail("seed", f"invalid seed {_short(seed)}", "use an integer in [0, 2**32)")
        return seed

    # -- primitives

    def _mapping(self, key: str, default: dict[str, Any]) -> dict[str, Any]:
        value = self.data.get(key, default)
        if value is None:
            return dict(default)
        if not isinstance(value, Mapping):
            raise self.fail(key, f"expected a mapping, got {_kind(value)}", f"write {key}: {{name: value, ...}}")
        return dict(value)

    def _bool(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {_short(value)}", f"write {key}: true or {key}: false")
        return value

    def _str(self, key: str, default: str | None) -> Any:
        value = self.data.get(key, default)
        if value is not None and not isinstance(value, str):
            raise self.fail(key, f"expected a string, got {_kind(value)}", "write text (quote it if YAML reads it as something else)")
        return value

    def _keep_checkpoints(self) -> int | None:
        value = self.data.get("keep_checkpoints", 5)
        if value is None or value == "all":
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.fail("keep_checkpoints", f"expected a number of trials >= 1 or all, got {_short(value)}",
                            "e.g. keep_checkpoints: 5 (the best five trials keep their checkpoints) or all")
        return value

    def _enqueue(self, space: Any, sampler: str, n_trials: int) -> tuple[dict[str, Any], ...]:
        """The points to try first, each checked against the space as the trial would be."""
        import json

        points = self.data.get("enqueue")
        if points is None:
            return ()
        if not isinstance(points, list):
            raise self.fail("enqueue", f"expected a list of points, got {_short(points)}",
                            "e.g. enqueue: [{optimizer: adam, lr: 0.001}]")
        if sampler == "grid" and points:
            raise self.fail("enqueue", "grid search already tries every point of the space in order",
                            "drop enqueue, or use another sampler")
        if len(points) > min(n_trials, _MAX_ENQUEUE):
            raise self.fail("enqueue", f"{len(points)} points but n_trials is {n_trials}: the last would never run"
                            if len(points) <= _MAX_ENQUEUE else f"{len(points)} points is more than {_MAX_ENQUEUE}",
                            "raise n_trials or drop points")
        seen: dict[str, int] = {}
        for i, point in enumerate(points):
            problem = space.partial_point_problem(point)
            if problem is not None:
                param, what, fix = problem
                raise self.fail(f"enqueue[{i}]" + (f".{param}" if param else ""), what, fix)
            flat = space.partial_optuna_params(point)
            if not flat:
                raise self.fail(f"enqueue[{i}]", "it gives only values the space fixes: the trial would be a random one",
                                "give at least one tuned param")
            key = json.dumps(flat, sort_keys=True, default=str)
            if key in seen:
                raise self.fail(f"enqueue[{i}]", f"the same point as enqueue[{seen[key]}]", "drop one of them")
            seen[key] = i
        return tuple(dict(point) for point in points)

    def _int(self, key: str, default: int, low: int, high: int) -> int:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected an integer, got {_short(value)}", f"use a whole number >= {low}")
        if not low <= value <= high:
            raise self.fail(key, f"{_short(value)} is out of range", f"use a value in [{low}, {high}]")
        return value

    def _number(self, value: Any, path: str, low: float, high: float) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(path, f"expected a number, got {_short(value)}", "write a number such as 1 or 0.5")
        if not low <= value <= high:  # before isfinite: an int beyond float range overflows there
            raise self.fail(path, f"{_short(value)} is out of range", f"use a value in [{low:g}, {high:g}]")
        return float(value)

    def _duration(self, key: str) -> float | None:
        value = self.data.get(key)
        if value is None:
            return None
        seconds = parse_duration(value)
        if seconds is None or seconds <= 0:
            # say what is wrong with a number the format refuses: 0, -5m, 1e99, nan
            meant = _loose_seconds(value)
            if meant is not None and math.isnan(meant):
                raise self.fail(key, f"{_short(value)} is not a number of seconds",
                                "use seconds (600) or a unit: 90s, 10m, 2h")
            if meant is not None and meant <= 0:
                raise self.fail(key, f"{_short(value)} is not a duration: it must be more than 0",
                                f"use seconds (600) or a unit: 90s, 10m, 2h, or leave {key} out for no limit")
            if meant is None or meant <= _MAX_DURATION_S:
                raise self.fail(key, f"invalid duration {_short(value)}", "use seconds (600) or a unit: 90s, 10m, 2h")
            seconds = meant  # too long (inf too): said below
        if seconds > _MAX_DURATION_S:
            raise self.fail(key, f"{_short(value)} is longer than a year", f"use at most {_MAX_DURATION_S // 86400}d, or leave {key} out for no limit")
        return seconds


def parse_duration(value: Any) -> float | None:
    """Seconds from ``600``, ``"90s"``, ``"10m"``, ``"2h"``; None when unparseable."""
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, (int, float)):
            return float(value) if math.isfinite(value) else None
        if isinstance(value, str):
            m = _DURATION_RE.match(value)
            if m:
                seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
                return seconds if math.isfinite(seconds) else None
    except OverflowError:  # an integer beyond float range
        return None
    return None


def _loose_seconds(value: Any) -> float | None:
    """The seconds ``value`` reads as when a sign, an exponent, inf or nan is let in (``-5m``,
    ``1e99``): only to say why :func:`parse_duration` refused it; None when it is no number at all."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:  # an integer beyond float range
            return math.inf
    if not isinstance(value, str):
        return None
    m = re.match(r"^\s*(.*?)\s*(s|sec|m|min|h|hr|d)?\s*$", value)
    try:
        number = float(m.group(1)) if m else None
    except ValueError:
        return None
    return None if number is None else number * _DURATION_UNITS[m.group(2)]  # type: ignore[union-attr]


def resolve_space_path(ref: str, base_dir: Path) -> Path | None:
    """Find a search-space file: as given, next to the spec, in the cwd, then in search_spaces/."""
    from tuner.space import find_space_file

    return find_space_file(ref, base_dir)


def _is_file(path: Path) -> bool:
    """``Path.is_file`` that answers False for paths the OS refuses (name too long, NUL byte)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


_PLUGIN_SIGNATURES: dict[tuple[str, str], Callable[[], Any]] = {}


def _check_plugin_args(kind: str, name: str, args: Mapping[str, Any]) -> tuple[str, list[str]] | None:
    """Return (bad_arg, allowed) when ``args`` has a key the sampler/pruner does not take."""
    if not args:
        return None
    from tuner.engine._plugins import allowed_args

    allowed = allowed_args(kind, name)
    for arg in args:
        if arg not in allowed:
            return str(arg), allowed
    return None


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "nothing"}.get(type(value), type(value).__name__)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _suggest(key: str, known: Any) -> str:
    import difflib

    known = sorted(map(str, known))
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}known: {', '.join(known)}"


def _natural_direction(metric: str) -> str | None:
    """``maximize``/``minimize`` for the metrics the built-in tasks report, from their names."""
    name = metric.lower()
    if name.endswith(("accuracy", "_f1", "precision", "recall", "_r2")):
        return "maximize"
    if name.endswith(("loss", "rmse", "mae", "latency_ms", "n_params", "_time_s")):
        return "minimize"
    return None
