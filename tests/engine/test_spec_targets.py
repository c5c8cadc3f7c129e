"""A study run from its spec ends where the spec says, whatever folder it is run from.

End to end through the driver: a grid search with ``n_trials`` above the grid's size finishes
(the spec caps the target at the grid, tuner/spec.py ``_grid_trials``) instead of stopping at
9/20 forever, and a relative SQLite ``storage:`` in the spec names the file beside the spec
(``_storage``), so rerunning the spec from another folder resumes the same study.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

import tuner
from tuner.engine._progress import Progress

pytestmark = pytest.mark.usefixtures("ray_cluster")

SPEC = """\
name: grid_target
objective: tests.objectives:quadratic
sampler: grid
pruner: none
seed: 0
search_space:
  params:
    x: {choice: [-1.0, 0.0, 1.0]}
    y: {int: [0, 2]}
n_trials: 20
storage: sqlite:///specstore.db
"""


def test_a_grid_study_run_from_another_folder_finishes_at_the_grids_size_beside_its_spec(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, elsewhere = tmp_path / "specs", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    spec = folder / "grid.yaml"
    spec.write_text(SPEC)
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("TUNER_STORAGE", raising=False)
    stream = io.StringIO()
    study = tuner.run("../specs/grid.yaml", progress=Progress(stream=stream, live=False))
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("starting study 'grid_target'") and "0/9 trials finished" in lines[0] and \
        lines[0].endswith("; note: grid: 9 points, so n_trials 20 runs 9"), lines[0]
    assert lines[-1].startswith("done: study 'grid_target' has 9/9 finished trials"), lines[-1]
    assert len(study.trials) == 9
    assert (folder / "specstore.db").is_file() and not (elsewhere / "specstore.db").exists()
    [info] = tuner.list_studies(f"sqlite:///{folder / 'specstore.db'}")
    assert (info.state, info.n_trials_target, info.counts) == ("finished", 9, {"COMPLETE": 9})
    # Rerun from a third folder: the same study, already finished, and nothing new is run.
    monkeypatch.chdir(tmp_path)
    again = io.StringIO()
    study = tuner.run(str(spec.relative_to(tmp_path)), progress=Progress(stream=again, live=False))
    first = again.getvalue().splitlines()[0]
    assert first.startswith("resuming study 'grid_target'") and "9/9 trials finished" in first, first
    assert len(study.trials) == 9 and not (tmp_path / "specstore.db").exists()
