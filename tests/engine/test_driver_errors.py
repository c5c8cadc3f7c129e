"""A tuner error raised inside Ray Tune's callbacks reaches the CLI as itself (tuner/engine/_driver.py)."""

from __future__ import annotations

import traceback

from ray.tune.error import TuneError

from tuner.engine._driver import tuner_error_in
from tuner.exceptions import StorageError


def _as_tune_wraps_a_callback_error(exc: Exception) -> TuneError:
    # What Tune's controller does with an exception from a callback (tune_controller.py).
    try:
        try:
            raise exc
        except Exception:
            raise TuneError(traceback.format_exc())
    except TuneError as wrapped:
        return wrapped


def test_a_storage_error_wrapped_by_tune_is_found() -> None:
    lost = StorageError("lost the storage for 3s; bring the database back and run the same command again")
    wrapped = _as_tune_wraps_a_callback_error(lost)
    assert tuner_error_in(wrapped) is lost
    outer = TuneError("The Ray Tune run failed.")
    outer.__cause__ = wrapped
    assert tuner_error_in(outer) is lost


def test_other_errors_are_left_to_propagate() -> None:
    assert tuner_error_in(_as_tune_wraps_a_callback_error(ValueError("a bug"))) is None
    loop = TuneError("self-referencing")
    loop.__context__ = loop
    assert tuner_error_in(loop) is None
