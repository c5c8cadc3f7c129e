"""Ray Tune is imported beside Ray's start (tuner/engine/_driver.py: _BackgroundImport)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tuner.engine._driver import _BackgroundImport


def test_the_module_comes_back_once_imported() -> None:
    import json

    assert _BackgroundImport("json").module() is json


def test_a_failed_import_raises_in_the_callers_thread() -> None:
    pending = _BackgroundImport("tuner_has_no_such_module")
    with pytest.raises(ModuleNotFoundError, match="tuner_has_no_such_module"):
        pending.module()


def test_the_driver_module_leaves_ray_tune_for_the_run() -> None:
    # The overlap needs ray.tune to be unimported when a run starts Ray: a module-level import
    # in the driver would pay it first, one after the other.
    probe = ("import sys\nimport tuner.engine._driver\n"
             "print(sorted(m for m in sys.modules if m == 'ray.tune' or m.startswith('ray.tune.')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
