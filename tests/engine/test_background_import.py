"""Ray Tune is imported beside Ray's start (tuner/engine/_driver.py: _BackgroundImport)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from tuner.engine._driver import _BackgroundImport


def test_the_module_is_imported_once_waited_for() -> None:
    probe = ("import sys\nfrom tuner.engine._driver import _BackgroundImport\n"
             "assert 'colorsys' not in sys.modules\n"
             "pending = _BackgroundImport('colorsys')\npending.wait()\n"
             "print('colorsys' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "True"


def test_a_failed_import_leaves_the_error_to_the_callers_own_import() -> None:
    pending = _BackgroundImport("tuner_has_no_such_module")
    pending.wait()  # does not raise: the thread's error has nowhere to go
    with pytest.raises(ModuleNotFoundError, match="tuner_has_no_such_module"):
        importlib.import_module("tuner_has_no_such_module")


def test_the_driver_module_leaves_ray_tune_for_the_run() -> None:
    # The overlap needs ray.tune to be unimported when a run starts Ray: a module-level import
    # in the driver would pay it first, one after the other.
    probe = ("import sys\nimport tuner.engine._driver\n"
             "print(sorted(m for m in sys.modules if m == 'ray.tune' or m.startswith('ray.tune.')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_tune_adapters_set_tunes_environment_whoever_imports_them() -> None:
    probe = ("import os\nos.environ.pop('RAY_CHDIR_TO_TRIAL_DIR', None)\n"
             "import tuner.engine._tune_glue\nprint(os.environ.get('RAY_CHDIR_TO_TRIAL_DIR'))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "0"
