"""Studies with known answers, built from FrozenTrials (no Ray): in memory, or in a SQLite file.

Trials carry the attributes the engine writes (``tuner:worker``, ``tuner:metrics``, ``tuner:curve``,
``tuner:error``) and the study the ``tuner:spec`` / ``tuner:space`` attributes.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from typing import Any, Callable, Sequence

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from tuner.engine import _attrs
from tuner.report import StudyData

T0 = dt.datetime(2026, 1, 5, 9, 0, 0)


def make_trial(number: int, params: dict[str, Any], dists: dict[str, BaseDistribution], values: Sequence[float] | None,
               state: TrialState = TrialState.COMPLETE, *, start_s: float | None = None, duration_s: float = 10.0,
               worker: dict[str, Any] | None = None, intermediate: dict[int, float] | None = None,
               system_attrs: dict[str, Any] | None = None) -> FrozenTrial:
    start = T0 + dt.timedelta(seconds=start_s if start_s is not None else number * duration_s)
    end = None if state in (TrialState.RUNNING, TrialState.WAITING) else start + dt.timedelta(seconds=duration_s)
    attrs = {_attrs.WORKER: worker if worker is not None else {"host": "h1", "pid": 100, "gpu_ids": [], "gpus": 0}}
    if values is not None and state == TrialState.COMPLETE:
        attrs[_attrs.METRICS] = {"value": values[0]}
    attrs.update(system_attrs or {})
    return FrozenTrial(number=number, state=state, value=None,
                       values=list(values) if values is not None and state == TrialState.COMPLETE else None,
                       datetime_start=start, datetime_complete=end, params=dict(params),
                       distributions={k: dists[k] for k in params}, user_attrs={}, system_attrs=attrs,
                       intermediate_values=dict(intermediate or {}), trial_id=number)


def random_trials(n: int, dists: dict[str, BaseDistribution], fn: Callable[[dict[str, Any]], Any], *, seed: int = 0,
                  **kw: Any) -> list[FrozenTrial]:
    """``n`` complete trials with parameters drawn uniformly (log-uniformly for log ones); values from ``fn``."""
    import math

    rng = random.Random(seed)
    out = []
    for i in range(n):
        params: dict[str, Any] = {}
        for name, d in dists.items():
            if isinstance(d, CategoricalDistribution):
                params[name] = rng.choice(d.choices)
            elif isinstance(d, IntDistribution):
                params[name] = rng.randint(d.low, d.high)
            elif isinstance(d, FloatDistribution) and d.log:
                params[name] = math.exp(rng.uniform(math.log(d.low), math.log(d.high)))
            else:
                params[name] = rng.uniform(d.low, d.high)
        v = fn(params)
        out.append(make_trial(i, params, dists, list(v) if isinstance(v, (list, tuple)) else [v], **kw))
    return out


def study_data(trials: list[FrozenTrial], directions: Sequence[str] = ("minimize",), metrics: Sequence[str] | None = None,
               name: str = "s", spec: dict[str, Any] | None = None) -> StudyData:
    metrics = list(metrics or (["value"] if len(directions) == 1 else [f"m{i}" for i in range(len(directions))]))
    return StudyData(name=name, directions=list(directions), metric_names=metrics, trials=trials, spec=spec)


def sqlite_study(path: Path, trials: list[FrozenTrial], *, name: str = "s", directions: Sequence[str] = ("minimize",),
                 metrics: Sequence[str] | None = None, spec: dict[str, Any] | None = None) -> str:
    """Write a study with ``trials`` into the SQLite file ``path`` the way tuner leaves one; returns the URL."""
    url = f"sqlite:///{path}"
    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(study_name=name, storage=storage, directions=list(directions))
    metrics = list(metrics or (["value"] if len(directions) == 1 else [f"m{i}" for i in range(len(directions))]))
    study.set_metric_names(metrics)
    spec = spec if spec is not None else {"version": 1, "name": name, "metrics": metrics, "directions": list(directions),
                                         "n_trials": len(trials), "search_space": {"params": {}}}
    storage.set_study_system_attr(study._study_id, _attrs.SPEC, spec)
    study.add_trials(trials)
    storage.engine.dispose()
    return url
