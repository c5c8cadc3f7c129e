"""Where a trial's time went: its stored moments (``tuner:timing``) turned into named phases.

A trial's duration alone hides what packing many short trials on a GPU, or starting a worker
process, costs: the time before training starts. The worker stores the moments it passes
(picked up, parameters sampled, finished) with those a task marks (``training_started``,
``training_ended``: see :meth:`tuner.TrialContext.mark`), and the dashboard, the report and
``bench gpu_packing`` read them through :func:`trial_phases`.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import Any

__all__ = ["PHASES", "trial_phases"]

#: The phases, in order, with what each one covers.
PHASES: dict[str, str] = {
    "queued": "from the trial's creation until a worker process existed for it",
    "worker start": "a new worker process: Python, Ray and imports, until it picked the trial up "
                    "(only a process's first trial)",
    "sampling": "opening the study (a process's first trial) and sampling the parameters",
    "setup": "the task before training: data, model, device (a CUDA context on a process's first trial)",
    "training": "the training loop (or the objective, where it marks no training)",
    "wrap-up": "after training: testing, checkpoints, the final writes",
}


def trial_phases(timing: Mapping[str, Any] | None, started: _dt.datetime | None = None) -> dict[str, float]:
    """Seconds per phase of :data:`PHASES`, for the phases the stored moments bound.

    ``started`` is the trial's ``datetime_start`` (when the driver created it). A phase whose
    bounds come from two machines' clocks and disagree (it would be negative) is left out.
    An objective that marks nothing gets ``training`` from its sampled parameters to its end, and
    a training stopped early (pruned, failed) runs to the trial's end.
    """
    if not isinstance(timing, Mapping):
        return {}
    t = {k: float(v) for k, v in timing.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    created = started.timestamp() if started is not None else None
    first_in_process = t.get("process_trial") == 1
    process = t.get("process_started") if first_in_process else None
    if process is not None and created is not None and process < created:
        process = None  # the process was started before this trial was created (e.g. by Ray ahead of time)
    bounds: list[tuple[str, float | None, float | None]] = [
        ("queued", created, process if process is not None else t.get("picked_up")),
        ("worker start", process, t.get("picked_up") if process is not None else None),
        ("sampling", t.get("picked_up"), t.get("asked")),
    ]
    if "training_started" in t:
        # A pruned or failed training never marks its end: it trained until the trial ended.
        bounds += [("setup", t.get("asked"), t["training_started"]),
                   ("training", t["training_started"], t.get("training_ended", t.get("finished"))),
                   ("wrap-up", t.get("training_ended"), t.get("finished"))]
    else:
        bounds.append(("training", t.get("asked"), t.get("finished")))
    return {name: end - begin for name, begin, end in bounds
            if begin is not None and end is not None and end >= begin}
