"""One measured run inside a fresh interpreter: ``python -m bench._child METHOD ARGS_JSON``.

Libraries are imported before the clock starts, so the time printed is the run itself
(study creation, Ray start and shutdown where there is Ray, every trial), not interpreter
start or imports; the parent times the whole process as well. The result is written as JSON
to ``args["result"]``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable


def run_optuna(args: dict[str, Any]) -> None:
    import optuna
    from optuna.samplers import TPESampler

    from bench._objective import optuna_objective

    start = time.perf_counter()
    study = optuna.create_study(storage=args["storage"], study_name=args["study"], direction="minimize",
                                sampler=TPESampler(seed=0))
    study.optimize(optuna_objective, n_trials=args["trials"], n_jobs=args["concurrency"])
    _done(args, start)


def run_tuner_api(args: dict[str, Any]) -> None:
    import tuner
    import tuner.engine._tune_glue  # noqa: F401 - imports Ray Tune now, as the other runs import their libraries
    # before the clock (tuner's own runs import it while Ray starts: the CLI row, whole process, shows that)

    start = time.perf_counter()
    tuner.run(args["spec"], storage=args["storage"], num_cpus=args["concurrency"], quiet=True)
    _done(args, start)


def run_raytune(args: dict[str, Any]) -> None:
    """Ray Tune wired by hand as its docs show: OptunaSearch on an RDB storage, defaults otherwise."""
    import optuna
    import ray
    from optuna.samplers import TPESampler
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    from bench._objective import HIGH, LOW, ray_trainable

    start = time.perf_counter()
    ray.init(address="local", num_cpus=args["concurrency"])
    ray_start_s = time.perf_counter() - start
    search = OptunaSearch(metric="loss", mode="min", sampler=TPESampler(seed=0),
                          storage=optuna.storages.RDBStorage(args["storage"]), study_name=args["study"])
    tuner = tune.Tuner(
        ray_trainable,
        param_space={"x": tune.uniform(LOW, HIGH), "y": tune.uniform(LOW, HIGH)},
        tune_config=tune.TuneConfig(search_alg=search, num_samples=args["trials"],
                                    max_concurrent_trials=args["concurrency"]),
        run_config=tune.RunConfig(name=args["study"], storage_path=args["workdir"]),
    )
    tuner.fit()
    ray.shutdown()
    _done(args, start, fixed_s=ray_start_s)


def _done(args: dict[str, Any], start: float, fixed_s: float | None = None) -> None:
    """``fixed_s``: the part of the call that does not grow with the trial count (Ray start)."""
    elapsed = time.perf_counter() - start
    Path(args["result"]).write_text(json.dumps({"call_s": elapsed, "fixed_s": fixed_s}))


METHODS: dict[str, Callable[[dict[str, Any]], None]] = {
    "optuna": run_optuna,
    "tuner-api": run_tuner_api,
    "raytune": run_raytune,
}

if __name__ == "__main__":
    METHODS[sys.argv[1]](json.loads(sys.argv[2]))
