"""Creating or resuming the stored study at the start of a run (tuner/engine/_study.py)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from tuner import storage as st
from tuner.engine._study import open_for_run
from tuner.exceptions import UserInputError
from tuner.spec import spec_from_mapping

_SPEC = {"name": "raced", "objective": "tests.objectives:slow_steps", "n_trials": 2,
         "search_space": {"params": {"x": {"float": [0.0, 1.0]}}}}


class _LookedEarly(optuna.storages.RDBStorage):
    """A storage whose list of studies was read just before another run created ``raced``."""

    def get_all_studies(self) -> list[optuna.study.FrozenStudy]:
        return []


def test_a_study_created_by_another_run_between_look_and_create_is_a_one_line_refusal(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'raced.db'}"
    st.open_storage(url)
    other = optuna.create_study(study_name="raced", storage=url)
    other.enqueue_trial({"x": 0.5})
    storage = _LookedEarly(url, skip_table_creation=True)
    try:
        with pytest.raises(UserInputError, match="created by another run at the same moment.*run this command again"):
            open_for_run(storage, spec_from_mapping(_SPEC), force=False)
        # The other run's study is left exactly as it was.
        (kept,) = optuna.get_all_study_summaries(url)
        assert kept.study_name == "raced" and kept.n_trials == 1
    finally:
        storage.engine.dispose()
        st._CACHE.pop((url, False)).engine.dispose()
