"""Stopping the Ray that a run started, without Ray's one-second wait for its autoscaler monitor.

``ray.shutdown()`` stops a local Ray's processes one after another: SIGTERM, then up to a
second for each to exit before SIGKILL. All exit at once but the autoscaler monitor, which
by then cannot: GCS is stopped before it, and its SIGTERM handler tries to publish "the
autoscaler failed" to the (gone) GCS until the second is up and SIGKILL comes (Ray 2.60,
``ray/autoscaler/_private/monitor.py: _signal_handler``). So every run paid a fixed second
(of about ten for 200 trivial trials) to end a process whose last act can only fail. A local
Ray has no autoscaler (no cluster config: nothing to scale down), so tuner sends that
process SIGKILL first and then lets ``ray.shutdown()`` stop the rest as usual; Ray then finds
the monitor gone and skips it. A Ray that tuner joined (``--ray-address``) is not touched:
``ray.shutdown()`` only disconnects from it, and this module only acts on processes this
interpreter started.
"""

from __future__ import annotations

import logging
import subprocess

_log = logging.getLogger("tuner")

_REAP_TIMEOUT_S = 2.0  # SIGKILL cannot be ignored; only a process stuck in the kernel takes longer


def shutdown_local_ray() -> None:
    """``ray.shutdown()``, with the autoscaler monitor of a Ray started here killed first."""
    import ray

    _kill_autoscaler_monitor()
    ray.shutdown()


def _kill_autoscaler_monitor() -> bool:
    """SIGKILL the monitor process of the Ray this interpreter started; True if one was killed.

    Reads Ray's private node record; on a Ray version without it nothing is killed and
    ``ray.shutdown()`` stops the monitor as before.
    """
    try:
        from ray._private import ray_constants
        from ray._private import worker as ray_worker

        node = ray_worker._global_node
        infos = list(node.all_processes.get(ray_constants.PROCESS_TYPE_MONITOR, ())) if node is not None else []
    except (ImportError, AttributeError):  # another Ray version: leave it to ray.shutdown()
        return False
    killed = False
    for info in infos:
        process: subprocess.Popen[bytes] | None = getattr(info, "process", None)
        if process is None or process.poll() is not None:
            continue
        process.kill()
        try:
            process.wait(timeout=_REAP_TIMEOUT_S)
        except subprocess.TimeoutExpired:  # ray.shutdown() will try again
            _log.debug("Ray's autoscaler monitor (pid %s) did not exit after SIGKILL", process.pid)
            continue
        killed = True
    return killed
