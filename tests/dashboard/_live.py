"""The objective of the browser's live-study test: ``dashboard_mix`` behind a gate the test opens.

Kept apart from the test module so that Ray's workers import it without pytest or Playwright.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.objectives import dashboard_mix

#: How long a trial waits for the gate before it gives up (the test opens it within seconds).
GATE_TIMEOUT_S = 300.0


def gated_mix(params: dict[str, Any], ctx: Any) -> dict[str, float]:
    """:func:`tests.objectives.dashboard_mix`, started only once the file named by the constant
    parameter ``gate`` exists.

    The test lets the run go on only after the open page has shown the study running (trial 0,
    RUNNING): the page is then sure to see the study change, however long the page took to load,
    and the trials need no sleep to last long enough to be watched.
    """
    gate = Path(params["gate"])
    deadline = time.monotonic() + GATE_TIMEOUT_S
    while not gate.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the test never created {gate}")
        time.sleep(0.05)
    return dashboard_mix({k: v for k, v in params.items() if k != "gate"}, ctx)
