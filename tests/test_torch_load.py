"""Checkpoints torch refuses are described in tuner's words, never with advice to load them unsafely."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tuner._torch_load import UnreadableCheckpoint, read_checkpoint
from tuner.exceptions import UserInputError
from tuner.export._trained import load_trained


class _Code:
    def __reduce__(self) -> tuple:
        return (print, ("this must never run",))


def test_unreadable_checkpoints_say_why_without_torchs_unsafe_advice(tmp_path: Path) -> None:
    torch.save({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "good.pt")
    assert torch.equal(read_checkpoint(tmp_path / "good.pt")["state_dict"]["w"], torch.zeros(2))
    torch.save({"w": _Code()}, tmp_path / "code.pt")
    (tmp_path / "noise.pt").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "text.pt").write_text("hello world")
    for name in ("code.pt", "noise.pt", "text.pt"):
        with pytest.raises(UnreadableCheckpoint) as info:
            read_checkpoint(tmp_path / name)
        assert "weights_only` set to `False`" not in str(info.value) and "\n" not in str(info.value)
        with pytest.raises(UserInputError, match=rf"cannot read checkpoint .*{name}: "):
            load_trained(tmp_path / name)
