"""Reading a checkpoint file with ``torch.load(weights_only=True)``, with a reason a person can act on.

torch's own message for a file it refuses begins by advising ``weights_only=False``, which runs
whatever code the file holds: tuner never does that, so it must not pass the advice on either.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["UnreadableCheckpoint", "read_checkpoint"]


class UnreadableCheckpoint(ValueError):
    """The file is not a checkpoint of tensors and plain data; ``str()`` says why, in one line."""


def read_checkpoint(path: str | Path) -> Any:
    """What ``path`` holds, on the CPU, loaded without running code from it."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UnreadableCheckpoint("it is corrupt or holds Python objects other than tensors and plain data "
                                   "(tuner reads checkpoints with weights_only=True and runs no code from them)") from None
    except Exception as exc:  # noqa: BLE001 - zip, legacy-pickle and I/O failures all mean "not a checkpoint"
        first = str(exc).splitlines()[0][:300] if str(exc) else ""
        raise UnreadableCheckpoint(f"not a PyTorch checkpoint ({type(exc).__name__}: {first})") from None
