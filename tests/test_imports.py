"""`import tuner` and `tuner --help` stay light: no Ray, Optuna, Plotly or torch at import."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("ray", "torch", "plotly", "optuna", "sklearn", "sqlalchemy")


def _loaded_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint(','.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.strip().splitlines()[-1].split(","))


def test_import_tuner_is_light() -> None:
    loaded = _loaded_after("import tuner; tuner.TrialPruned; tuner.SpecError")
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_cli_help_is_light() -> None:
    loaded = _loaded_after("from tuner.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass")
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_validate_does_not_start_ray_or_torch(tmp_path) -> None:  # type: ignore[no-untyped-def]
    loaded = _loaded_after("from tuner._api import validate; validate('studies/quickstart.yaml')")
    assert "ray" not in loaded and "torch" not in loaded
