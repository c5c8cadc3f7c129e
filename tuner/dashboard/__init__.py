"""``tuner dashboard``: a read-only web app over a tuner storage (studies, trials, figures, artifacts).

:func:`create_app` builds the FastAPI app (pages plus the JSON API under ``/api/``, schema at
``/openapi.json``); :func:`serve` runs it with uvicorn. See :mod:`tuner.dashboard._app`.
"""

from __future__ import annotations

import ipaddress
import sys
from typing import Any

from tuner.dashboard._app import create_app

__all__ = ["create_app", "serve", "is_loopback"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(storage: str | None = None, *, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
          log_level: str = "warning", **uvicorn_kwargs: Any) -> None:
    """Serve the dashboard until interrupted (binds to 127.0.0.1 unless told otherwise)."""
    import uvicorn

    app = create_app(storage, token=token)
    if not is_loopback(host) and not token:
        print(f"warning: the dashboard listens on {host} without a token: anyone who can reach this port can read "
              f"every study; pass --token or set TUNER_DASHBOARD_TOKEN", file=sys.stderr)
    uvicorn.run(app, host=host, port=port, log_level=log_level, **uvicorn_kwargs)
