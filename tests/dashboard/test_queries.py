"""The dashboard's queries on studies written directly through Optuna (no Ray): orderings, Pareto
fronts, memoised answers that follow every write, and PostgreSQL."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from tuner.dashboard import _queries
from tuner.dashboard._queries import BadQuery, DashboardData, ParamFilter, TrialQuery
from tuner.storage import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _fill(url: str, n: int = 60, seed: int = 0, name: str = "s") -> optuna.Study:
    rng = random.Random(seed)
    study = optuna.create_study(study_name=name, storage=url, direction="minimize")
    dists = {"lr": FloatDistribution(1e-4, 1e-1, log=True), "opt": CategoricalDistribution(["sgd", "adam"])}
    for i in range(n):
        state = TrialState.FAIL if i % 7 == 3 else TrialState.COMPLETE
        study.add_trial(create_trial(params={"lr": rng.uniform(1e-4, 1e-1), "opt": rng.choice(["sgd", "adam"])},
                                     distributions=dists, state=state,
                                     value=rng.random() if state == TrialState.COMPLETE else None))
    return study


def _ids_to_numbers(study: optuna.Study, rows: list[dict[str, Any]]) -> list[int]:
    return [r["number"] for r in rows]


def test_param_filter_parsing() -> None:
    assert ParamFilter.parse("lr:0.001:0.01") == ParamFilter("lr", 0.001, 0.01)
    assert ParamFilter.parse("width.0::64") == ParamFilter("width.0", None, 64.0)
    assert ParamFilter.parse("lr|optimizer=sgd:1e-3:") == ParamFilter("lr|optimizer=sgd", 1e-3, None)
    assert ParamFilter.parse("opt=adam|sgd") == ParamFilter("opt", choices=("adam", "sgd"))
    assert ParamFilter.parse("lr|optimizer=sgd=x") == ParamFilter("lr|optimizer=sgd", choices=("x",))
    for bad in ("lr", "lr:", "=x", "lr::", "lr:1:inf"):
        with pytest.raises(BadQuery):
            ParamFilter.parse(bad)


def test_deep_pages_read_from_the_far_end_match_the_forward_walk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    _fill(url)
    data = DashboardData(open_storage(url, readonly=True))
    pages = {}
    for deep in (10**9, 0):  # first every page walked from the start, then deep ones from the far end
        monkeypatch.setattr(_queries, "_REVERSE_FROM", deep)
        data = DashboardData(open_storage(url, readonly=True))  # no memo shared between the two passes
        for sort in ("value", "param:lr", "number", "duration"):
            for order in ("asc", "desc"):
                for page in range(1, 8):
                    res = data.trials("s", TrialQuery(sort=sort, order=order, page=page, per_page=9))
                    key = (sort, order, page)
                    numbers = [r["number"] for r in res["trials"]]
                    if deep:
                        pages[key] = numbers
                    else:
                        assert numbers == pages[key], key
    assert sum(len(v) for k, v in pages.items() if k[:2] == ("value", "asc")) == 60


def test_memoised_answers_follow_every_write(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    study = _fill(url, n=10)
    data = DashboardData(open_storage(url, readonly=True))
    before = (data.studies()[0]["counts"], data.study("s")["counts"], data.version("s"),
              data.trials("s", TrialQuery())["total"], data.param_names("s"))
    assert before[3] == 10
    writer = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'm.db'}")  # another connection
    writer.add_trial(create_trial(params={"lr": 0.01, "opt": "sgd", "extra": 1.0},
                                  distributions={"lr": FloatDistribution(1e-4, 1e-1, log=True),
                                                 "opt": CategoricalDistribution(["sgd", "adam"]),
                                                 "extra": FloatDistribution(0, 2)}, value=-1.0))
    after = (data.studies()[0]["counts"], data.study("s")["counts"], data.version("s"),
             data.trials("s", TrialQuery())["total"], data.param_names("s"))
    assert after[0]["COMPLETE"] == before[0]["COMPLETE"] + 1
    assert after[1]["COMPLETE"] == before[1]["COMPLETE"] + 1
    assert after[2] != before[2] and after[3] == 11
    assert after[4] == ["extra", "lr", "opt"]
    assert data.study("s")["best_trials"][0]["number"] == 10  # the new best
    del study


def test_pareto_front_of_a_two_objective_study(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mo.db'}"
    study = optuna.create_study(study_name="mo", storage=url, directions=["maximize", "minimize"])
    rng = random.Random(1)
    for _ in range(40):
        study.add_trial(create_trial(params={"a": rng.random()}, distributions={"a": FloatDistribution(0, 1)},
                                     values=[rng.random(), rng.random()]))
    data = DashboardData(open_storage(url, readonly=True))
    front = {t["number"] for t in data.study("mo")["best_trials"]}
    assert front == {t.number for t in study.best_trials}
    rows = data.trials("mo", TrialQuery(sort="value:1", per_page=500))["trials"]
    assert [r["values"][1] for r in rows] == sorted(r["values"][1] for r in rows)
    with pytest.raises(BadQuery):
        data.trials("mo", TrialQuery(sort="value:2"))


def test_postgresql_gives_the_same_table(postgres_url: str, tmp_path: Path) -> None:
    sqlite_url = f"sqlite:///{tmp_path / 'same.db'}"
    for url in (postgres_url, sqlite_url):
        _fill(url, n=40, seed=5)
    pg = DashboardData(open_storage(postgres_url))
    lite = DashboardData(open_storage(sqlite_url))
    for q in (TrialQuery(sort="value", order="desc"), TrialQuery(sort="param:lr"), TrialQuery(sort="duration"),
              TrialQuery(states=("FAIL",)), TrialQuery(params=(ParamFilter("opt", choices=("adam",)),), sort="value"),
              TrialQuery(params=(ParamFilter("lr", 1e-3, 1e-2),), value_max=0.5)):
        a, b = pg.trials("s", q), lite.trials("s", q)
        assert a["total"] == b["total"] and [r["number"] for r in a["trials"]] == [r["number"] for r in b["trials"]], q
    assert pg.studies()[0]["counts"] == lite.studies()[0]["counts"]
    assert pg.param_names("s") == ["lr", "opt"]


def test_interleaved_studies_keep_their_own_trials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two studies written turn by turn: neither is a range of trial ids, so the table joins the trials."""
    url = f"sqlite:///{tmp_path / 'two.db'}"
    a = optuna.create_study(study_name="a", storage=url)
    b = optuna.create_study(study_name="b", storage=url)
    rng = random.Random(3)
    dist = {"x": FloatDistribution(0, 1)}
    for i in range(30):
        for study in (a, b):
            study.add_trial(create_trial(params={"x": rng.random()}, distributions=dist,
                                         value=rng.random() if i % 5 else None,
                                         state=TrialState.COMPLETE if i % 5 else TrialState.FAIL))
    monkeypatch.setattr(_queries, "_REVERSE_FROM", 0)
    data = DashboardData(open_storage(url, readonly=True))
    for study in (a, b):
        trials = study.get_trials(deepcopy=False)
        expected = [t.number for t in sorted((t for t in trials if t.values), key=lambda t: (-t.value, -t.number))]
        expected += sorted(t.number for t in trials if not t.values)
        got = [r["number"] for page in range(1, 5)
               for r in data.trials(study.study_name, TrialQuery(sort="value", order="desc", page=page, per_page=8))["trials"]]
        assert got == expected
        pairs = [r["number"] for page in range(1, 16)  # small pages: the tail without values is read from its end too
                 for r in data.trials(study.study_name, TrialQuery(sort="value", order="desc", page=page, per_page=2))["trials"]]
        assert pairs == expected
        by_x = [r["number"] for r in data.trials(study.study_name, TrialQuery(sort="param:x", per_page=500))["trials"]]
        assert by_x == [t.number for t in sorted(trials, key=lambda t: t.params["x"])]


def test_the_version_changes_when_the_run_ends_without_any_trial_changing(tmp_path: Path) -> None:
    """The study page refreshes on a new version: the run's end must give one, written or not."""
    import os
    import socket
    import subprocess
    import sys

    from tuner.engine import _attrs
    from tuner.engine._study import _proc_start_time

    url = f"sqlite:///{tmp_path / 'lease.db'}"
    study = _fill(url, n=5)
    data = DashboardData(open_storage(url, readonly=True))
    idle = data.version("s")
    assert data.study("s")["state"] != "running"

    # A driver that is alive (a real process of this host), then gone without writing anything.
    driver = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lease = {"host": socket.gethostname(), "pid": driver.pid, "proc_start": _proc_start_time(driver.pid),
                 "heartbeat": 0.0}
        study._storage.set_study_system_attr(study._study_id, _attrs.DRIVER, lease)
        running = data.version("s")
        assert running != idle and data.study("s")["state"] == "running"
        assert data.version("s") == running  # unchanged while nothing changes
    finally:
        driver.kill()
        driver.wait()
    died = data.version("s")
    assert died != running and data.study("s")["state"] != "running"

    # A driver that releases its lease: the same trials, one more version.
    study._storage.set_study_system_attr(study._study_id, _attrs.DRIVER, {
        "host": socket.gethostname(), "pid": os.getpid(), "proc_start": _proc_start_time(os.getpid()),
        "heartbeat": 0.0})
    assert data.version("s") != died
    study._storage.set_study_system_attr(study._study_id, _attrs.DRIVER, None)
    assert data.version("s") == died

    # A run that changed no trial (a run of a finished study) and ended between two polls: its
    # entry in the run log is a new version, so the page's runs table shows it.
    from tuner.engine._study import record_run

    record_run(study, {"started": 1.0, "ended": 2.0, "host": "h", "pid": 1, "end": "done", "complete": 0})
    assert data.version("s") != died and data.study("s")["n_runs"] == 1
