"""`python -m bench efficiency`'s options, as the runs receive them (nothing is trained here)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from bench import efficiency, efficiency_runners


@pytest.mark.parametrize(("argv", "seeds"), [
    (["--quick", "--seeds=3"], 3),  # `"--seeds" not in argv` missed this spelling: 2 seeds ran
    (["--quick", "--seeds", "3"], 3),
    (["--quick"], 2),
    ([], 5),
])
def test_the_seed_count_is_the_one_given_however_it_is_spelt(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, argv: list[str], seeds: int) -> None:
    ran: list[argparse.Namespace] = []

    def record(args: argparse.Namespace, *_rest: Any) -> int:
        ran.append(args)
        return 0

    monkeypatch.setattr(efficiency_runners, "init_ray", lambda _n: None)
    monkeypatch.setattr(efficiency, "_run_all", record)
    assert efficiency.main([*argv, "--problems", "branin", "--out", str(tmp_path)]) == 0
    assert ran[0].seeds == seeds
