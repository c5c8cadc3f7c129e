"""Names of the trial and study attributes tuner stores in Optuna's storage.

One place for them, so the engine writes and the report/dashboard/export read the same keys.
"""

from __future__ import annotations

# study system attrs
SPEC = "tuner:spec"            # the validated spec (JSON) the study last ran with
SPACE = "tuner:space"          # the canonical search space, to refuse an incompatible resume
DRIVER = "tuner:driver"        # {host, pid, start, heartbeat} of the driver running the study
EXPORTS = "tuner:exports"      # [{trial, folder, files: {format: {file, sha256, bytes}}, exported_at}] by tuner export
RUN_LOG = "tuner:runs"         # [{started, ended, host, pid, end, complete, pruned, failed, ...}] per run, oldest first
STOP = "tuner:stop"            # {run: {host, pid, started} of the run asked to stop, by, at}: `tuner stop`
ENQUEUED = "tuner:enqueued"    # the spec's `enqueue` points already enqueued (canonical JSON of their Optuna params)
RERUN = "tuner:rerun"          # numbers of the unfinished trials not run again: their configuration was cut short 3 times

# trial system attrs
WORKER = "tuner:worker"        # {host, ip, node_id, pid, gpu_ids, cuda_visible_devices, trial_dir, started}
TIMING = "tuner:timing"        # {process_started, process_trial, picked_up, asked, <ctx.mark names>, finished}
CURVE = "tuner:curve"          # [{"step": n, metric: value, ...}, ...] every reported epoch
METRICS = "tuner:metrics"      # final metrics {name: value}
ERROR = "tuner:error"          # {type, message, traceback} of a failed trial
ARTIFACTS = "tuner:artifacts"  # [{name, uri, size}] files the trial left in its folder (the only downloadable ones)
RERUN_OF = "tuner:rerun_of"    # the number of the unfinished trial whose parameters this trial runs again
ATTR_PREFIX = "tuner:attr:"    # ctx.set_attr(key, value) -> tuner:attr:key
