"""Reading a study straight from its storage URL in a test, with every connection closed after.

``optuna.load_study(storage=url)`` builds a new SQLAlchemy engine on each call and never disposes
of it: its pooled connections stay open until the garbage collector reaches the engine. A test
that polls a PostgreSQL study five times a second piled them up (about 20 after 300 polls here)
and, on a busier server, ran it out of connections ("FATAL: sorry, too many clients already",
a CI failure). These helpers dispose of the engine before they return.

A poll can also be the first to open a run's brand-new database, racing the run to create the
schema; it goes through tuner's race-tolerant constructor so that neither side fails.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.storage import init_rdb_storage


@contextmanager
def opened_study(url: str, name: str) -> Iterator[optuna.Study]:
    """The study ``name`` on ``url`` (KeyError if absent); its engine is disposed of on exit."""
    storage = init_rdb_storage(optuna.storages.RDBStorage, url)
    try:
        yield optuna.load_study(study_name=name, storage=storage)
    finally:
        storage.remove_session()
        storage.engine.dispose()


def read_trials(url: str, name: str, states: tuple[TrialState, ...] | None = None) -> list[FrozenTrial]:
    """The study's trials, read fresh (KeyError if the study is absent)."""
    with opened_study(url, name) as study:
        return study.get_trials(deepcopy=False, states=states)
