"""Ray Tune's environment for tuner's runs, set when this module is imported.

It must be in place before Ray starts (Ray's workers inherit the driver's environment) and
before Ray Tune is imported (Tune reads some of it at import), so both the driver and the Tune
adapters import this first. A value the user set already is kept.
"""

from __future__ import annotations

import os

#: No TensorBoard/CSV/JSON loggers per trial (the storage is the record), no per-trial
#: working-directory change, quiet output.
TUNE_ENV = {
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "RAY_CHDIR_TO_TRIAL_DIR": "0",
    "TUNE_WARN_THRESHOLD_S": "30",
    "TUNE_WARN_INSUFFICENT_RESOURCE_THRESHOLD_S": "1000000",
    "RAY_AIR_NEW_OUTPUT": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DEDUP_LOGS": "0",
    "TUNE_RESULT_BUFFER_LENGTH": "1",
    "TUNE_GLOBAL_CHECKPOINT_S": "3600",
    # Tune logs each failed trial's Ray traceback (`ERROR tune_controller.py -- Trial task
    # failed`); tuner prints its own line per failed trial and stores the error with the trial.
    "TUNE_PRINT_ALL_TRIAL_ERRORS": "0",
    # Tune sets this on every trial actor (PyTorch Lightning must not fork inside Ray); set here,
    # a Ray that tuner starts hands it to every worker, which lets trial actors use Ray's
    # prestarted workers (tuner.engine._prestart).
    "PL_DISABLE_FORK": "1",
}

for _key, _value in TUNE_ENV.items():
    os.environ.setdefault(_key, _value)
