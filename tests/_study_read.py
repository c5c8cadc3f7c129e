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
from typing import TYPE_CHECKING, Iterator

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.storage import init_rdb_storage

if TYPE_CHECKING:
    import pytest


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


def refuse_optuna_trial_reads(monkeypatch: "pytest.MonkeyPatch") -> None:
    """Make any read of trials through Optuna's RDB storage fail the test.

    Such a read loads every trial it matches with all its rows; code that must not read a whole
    study (counts, rankings, a resume) is checked under this. tuner's writer wraps its own copy
    of the method, and its reader another, so all three classes are patched.
    """
    from tuner._retry_storage import RetryingRDBStorage, TrialReadingRDBStorage

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("read the study's trials through Optuna's storage")

    for cls in (optuna.storages.RDBStorage, TrialReadingRDBStorage, RetryingRDBStorage):
        monkeypatch.setattr(cls, "_get_trials", refuse)
