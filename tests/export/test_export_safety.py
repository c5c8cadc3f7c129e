"""``tuner export`` must never lose a good export, and must say plainly what it did and why it refused.

Two tiny studies (quickstart MLP, sklearn gradient boosting) and one study of a user's own
objective, from the tiny studies trained once per test run (tests/export/conftest.py); this
module works on its own copy of their storage and trains nothing itself.
"""

from __future__ import annotations

import json
import contextlib
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import optuna
import pytest

import tuner
from tests.conftest import small_disk_at
from tests.export.conftest import TinyStudies, copy_storage
from tests.export.test_export import _cli, _one_line_error
from tuner.export import EXPORTERS
from tuner.export._export import CARD_JSON, CARD_MD, ExportCheckError


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory, tiny_studies: TinyStudies) -> str:
    """This module's copy of the tiny studies' storage: the exports its tests record (and count) are its own."""
    return copy_storage(tiny_studies, tmp_path_factory.mktemp("export-safety"))


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _exports_recorded(storage: str, study: str) -> Any:
    from tuner.engine import _attrs

    loaded = optuna.load_study(study_name=study, storage=storage)
    return loaded._storage.get_study_system_attrs(loaded._study_id).get(_attrs.EXPORTS)


def _break_torchscript(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the TorchScript file's outputs differ from the model's: its parity check fails."""
    exporter = EXPORTERS["torchscript"]
    runner = exporter.runner

    def off_by_one(path: Path) -> Any:
        run = runner(path)
        return lambda X: run(X) + 1.0

    monkeypatch.setattr(exporter, "runner", off_by_one)


# ---- 1. a failed export leaves what was there --------------------------------------------------------------


def test_a_failed_reexport_keeps_the_previous_export(storage: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    keep = tmp_path / "keep"
    tuner.export("quickstart", keep, storage=storage, formats=["state_dict", "onnx"])
    (keep / "notes.txt").write_text("mine")
    before, recorded = _snapshot(keep), _exports_recorded(storage, "quickstart")
    assert {"model.pt", "model.onnx", CARD_JSON, CARD_MD, "notes.txt"} <= set(before)

    _break_torchscript(monkeypatch)
    with pytest.raises(ExportCheckError, match="outputs differ"):
        tuner.export("quickstart", keep, storage=storage, formats=["torchscript", "onnx"])
    assert _snapshot(keep) == before  # the old export, byte for byte, and nothing of the new one
    assert _exports_recorded(storage, "quickstart") == recorded  # the dashboard's record too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep"]  # no work folder left beside it

    monkeypatch.undo()  # a re-export that passes replaces the old export's files (and only those)
    tuner.export("quickstart", keep, storage=storage, formats=["torchscript"])
    card = json.loads((keep / CARD_JSON).read_text())
    assert list(card["files"]) == ["torchscript"]
    assert sorted(p.name for p in keep.iterdir()) == sorted([CARD_JSON, CARD_MD, "model.torchscript.pt", "notes.txt"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep"]
    entries = [e for e in _exports_recorded(storage, "quickstart") if e["folder"] == str(keep.resolve())]
    assert len(entries) == 1 and set(entries[0]["files"]) == {"torchscript", CARD_JSON, CARD_MD}


def test_a_failed_export_into_a_new_folder_leaves_no_folder(storage: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    _break_torchscript(monkeypatch)
    with pytest.raises(ExportCheckError, match="outputs differ"):
        tuner.export("quickstart", tmp_path / "new" / "deeper", storage=storage, formats=["torchscript"])
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "empty").mkdir()  # a folder the user made stays, empty
    with pytest.raises(ExportCheckError, match="outputs differ"):
        tuner.export("quickstart", tmp_path / "empty", storage=storage, formats=["torchscript"])
    assert [p.name for p in tmp_path.iterdir()] == ["empty"] and list((tmp_path / "empty").iterdir()) == []


# ---- 2-4. one-line errors on the command line ----------------------------------------------------------------


def test_unusable_output_paths_are_one_line_errors(storage: str, tmp_path: Path) -> None:
    run = _cli("export", "quickstart", "-o", "/proc/x", "--storage", storage, "--format", "torchscript")
    _one_line_error(run, "-o /proc/x: cannot create")
    np.save(tmp_path / "somefile.npy", np.zeros(3))
    target = str(tmp_path / "somefile.npy" / "sub")
    run = _cli("export", "quickstart", "-o", target, "--storage", storage, "--format", "torchscript")
    _one_line_error(run, f"-o {target}: cannot create")
    assert "somefile.npy is a file" in run.stderr


def test_a_negative_tolerance_is_refused_before_anything_is_written(storage: str, tmp_path: Path) -> None:
    for value in ("-1", "nan"):
        run = _cli("export", "quickstart", "-o", str(tmp_path / "t"), "--storage", storage, "--tolerance", value)
        _one_line_error(run, "--tolerance must be >= 0")
        assert not (tmp_path / "t").exists()


def test_quantizing_a_sklearn_model_names_the_quantize_flag(storage: str, tmp_path: Path) -> None:
    run = _cli("export", "sklearn_gbm", "-o", str(tmp_path / "q1"), "--storage", storage, "--quantize", "int8")
    _one_line_error(run, "--quantize int8 does not apply to a sklearn model")
    assert "--format" not in run.stderr and not (tmp_path / "q1").exists()


# ---- 5-6. the model card describes the exported model ------------------------------------------------------


def test_a_retrained_export_has_the_retrained_models_card(storage: str, tmp_path: Path) -> None:
    out = tmp_path / "retr"
    result = tuner.export("quickstart", out, storage=storage, formats=["torchscript"], retrain=True)
    card = json.loads((out / CARD_JSON).read_text())
    info = card["retrained"]
    best = optuna.load_study(study_name="quickstart", storage=storage).best_trial
    trial_metrics = best.system_attrs["tuner:metrics"]
    # the metrics are the exported model's; the trial's are shown as the trial's
    assert card["metrics"]["test_accuracy"] == pytest.approx(info["test_accuracy"])
    assert card["trial_metrics"]["test_accuracy"] == pytest.approx(trial_metrics["test_accuracy"])
    assert not any(k.startswith("val_") for k in card["metrics"])  # validation was trained on
    # sizes add up: train (train + val of the trial) and test, the same samples as the trial's parts
    sizes = card["data"]["sizes"]
    from tuner.export._trained import find_checkpoint, load_trained

    study = optuna.load_study(study_name="quickstart", storage=storage)
    original = load_trained(find_checkpoint(study, best.number)).data["sizes"]
    assert set(sizes) == {"train", "test"} and sizes["train"] == original["train"] + original["val"]
    assert sizes["test"] == original["test"] and sum(sizes.values()) == sum(original.values())
    assert result.card["checked_against"].startswith("the retrained model")
    md = (out / CARD_MD).read_text()
    assert f"retrained on train + validation ({sizes['train']} samples)" in md
    assert f"from trial {best.number}'s parameters" in md
    metrics_table = md.split("## Metrics", 1)[1].split("##", 1)[0]
    assert f"| test_accuracy | {info['test_accuracy']:.6g} |" in metrics_table
    trial_table = md.split(f"## Trial {best.number}'s metrics", 1)[1].split("##", 1)[0]
    assert f"| test_accuracy | {trial_metrics['test_accuracy']:.6g} |" in trial_table
    assert "(recorded)" not in md and "retrained model" in md.split("## Files and checks", 1)[1]


def test_a_sklearn_card_says_what_the_exported_object_holds(storage: str, tmp_path: Path) -> None:
    import joblib

    out = tmp_path / "gbm"
    run = _cli("export", "sklearn_gbm", "-o", str(out), "--storage", storage)
    assert run.returncode == 0, run.stderr
    model = joblib.load(out / "model.joblib")
    card = json.loads((out / CARD_JSON).read_text())
    note = card["preprocessing"]["note"]
    assert not hasattr(model, "steps")  # the study's estimator is not scaled (task_args.scale: false)
    assert "scaler" not in note and "HistGradientBoostingClassifier" in note and "no preprocessing" in note
    assert "PyTorch" not in run.stdout and "vs the trial's model" in run.stdout
    md = (out / CARD_MD).read_text()
    assert "PyTorch" not in md and "max abs diff vs the trial's model as trained" in md
    assert card["compared_with"] == "the trial's model as trained"


def test_the_sklearn_preprocessing_note_reads_a_pipeline() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from tuner.export._export import _sklearn_preprocessing

    piped = _sklearn_preprocessing(Pipeline([("scale", StandardScaler()), ("model", HistGradientBoostingClassifier())]))
    assert "StandardScaler" in piped and "scales the raw features itself" in piped
    assert "no preprocessing" in _sklearn_preprocessing(HistGradientBoostingClassifier())


# ---- 7. a study of a user's own objective -----------------------------------------------------------------------


def test_a_custom_objective_study_says_there_is_no_model(storage: str, tmp_path: Path) -> None:
    run = _cli("export", "own_objective", "-o", str(tmp_path / "p"), "--storage", storage)
    _one_line_error(run, "has no checkpoint to export")
    assert "is not a built-in task" in run.stderr
    assert "tuner best own_objective" in run.stderr and "--trial" not in run.stderr
    assert not (tmp_path / "p").exists()


def test_an_interrupt_while_swapping_puts_the_previous_export_back(storage: str, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # A Ctrl-C between moving the old files aside and moving the new ones in used to leave the
    # old ones in the work folder, which was then deleted.
    import tuner.export._export as export_module

    keep = tmp_path / "keep"
    tuner.export("quickstart", keep, storage=storage, formats=["state_dict"])
    before = _snapshot(keep)
    real_move, moves = export_module.shutil.move, []

    def interrupted_move(src: str, dst: str) -> Any:
        moves.append(src)
        if len(moves) == 4:  # three old files moved aside (card, card.md, model.pt); then the first new one
            raise KeyboardInterrupt
        return real_move(src, dst)

    monkeypatch.setattr(export_module.shutil, "move", interrupted_move)
    with pytest.raises(KeyboardInterrupt):
        tuner.export("quickstart", keep, storage=storage, formats=["state_dict"])
    monkeypatch.undo()
    assert _snapshot(keep) == before
    assert [p.name for p in keep.iterdir() if p.name.startswith(".")] == []  # the work folder went too
    # An existing output folder holds the work folder itself: nothing is made beside it (`-o .`).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep"]


def test_a_model_torch_export_cannot_capture_is_one_line_and_nothing_written(
        storage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An older torch (or a graph torch.export cannot capture) raised its own error, a traceback,
    out of a default export; it is one line naming the format and the other formats to use."""
    import torch
    from click.testing import CliRunner

    from tuner.cli import main

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("data-dependent control flow\nmore detail")

    monkeypatch.setattr(torch.export, "export", refuse)
    out = tmp_path / "best"
    result = CliRunner().invoke(main, ["export", "quickstart", "-o", str(out), "--storage", storage])
    assert result.exit_code == 2, result.output
    assert result.output == (f"error: exported_program: torch {torch.__version__} could not capture the model "
                             f"(RuntimeError: data-dependent control flow); export the other formats with --format "
                             f"state_dict,torchscript,onnx, or use the torch version in constraints.txt\n")
    assert not out.exists()


# ---- 5. the parity check of a regression model scales with its outputs -----------------------------------------


def test_a_regression_model_with_large_targets_exports_and_a_real_difference_still_fails(
        storage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Targets around 1.5e6 (diabetes x 10,000): float32 keeps about 7 digits, so runtimes differ by
    0.1 or more and the absolute 1e-4 refused every export (``onnx: outputs differ ... by 0.5``)."""
    result = tuner.export("diabetes_big", tmp_path / "big", storage=storage, formats=["torchscript", "onnx"])
    for check in result.checks.values():
        assert 1e-4 < check["tolerance"] < 1e-4 * 1e6  # scaled to the outputs, yet far below their size
        assert check["max_abs_diff"] <= check["tolerance"]
    card = json.loads((tmp_path / "big" / CARD_JSON).read_text())
    assert card["checks"]["onnx"]["tolerance"] == result.checks["onnx"]["tolerance"]
    # a table's rows are features as they are: the images' C, H, W note is not for it (it was on every torch card)
    assert card["input"]["layout"] == "one row of raw features per sample"
    assert "C, H, W" not in (tmp_path / "big" / CARD_MD).read_text()

    # float32 rounding of every output (a relative 2e-7) passes whatever the runtime; 1e-4 of it does not
    exporter = EXPORTERS["onnx"]
    runner = exporter.runner
    for factor, passes in ((1 + 2e-7, True), (1 + 1e-4, False)):
        monkeypatch.setattr(exporter, "runner", lambda path, f=factor: (lambda X, run=runner(path): run(X) * f))
        if passes:
            tuner.export("diabetes_big", tmp_path / "rounded", storage=storage, formats=["onnx"])
        else:
            with pytest.raises(ExportCheckError, match=r"onnx: outputs differ .* \(tolerance [0-9.]+ = 0.0001 \+ 1e-05 "
                                                       r"x the largest output"):
                tuner.export("diabetes_big", tmp_path / "off", storage=storage, formats=["onnx"])
            assert not (tmp_path / "off").exists()

    # a classifier's logits keep the absolute tolerance as given
    monkeypatch.setattr(exporter, "runner", lambda path: (lambda X, run=runner(path): run(X) + 2e-4))
    with pytest.raises(ExportCheckError, match=r"onnx: outputs differ .* \(tolerance 0.0001\)"):
        tuner.export("quickstart", tmp_path / "logits", storage=storage, formats=["onnx"])


# ---- 6. a full disk ------------------------------------------------------------------------------------------


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """``mount(KiB)``: a folder on a tmpfs of that size, unmounted afterwards.

    Mounting needs root (which CI has here); elsewhere the test is skipped.
    """
    with contextlib.ExitStack() as stack:
        yield lambda kib: stack.enter_context(small_disk_at(tmp_path / "small_disk", kib))


def test_a_full_disk_is_one_line_and_keeps_the_previous_export(storage: str, tmp_path: Path, small_disk: Callable[[int], Path]) -> None:
    """torch's zip writer met a full disk with ``c10::Error ... unexpected pos`` and aborted the process
    (rc 134, the work folder left behind); with some room, a traceback ending in ``No space left on device``."""
    measure = tuner.export("quickstart", tmp_path / "measure", storage=storage, formats=["state_dict"]).folder
    pages = [-(-p.stat().st_size // 4096) * 4 for p in measure.iterdir()]  # KiB a tmpfs gives each file
    # room for a state-dict export and one more model.pt: the full export's next file does not fit
    disk = small_disk(sum(pages) + max(pages))
    out = disk / "out"
    tuner.export("quickstart", out, storage=storage, formats=["state_dict"])
    before = _snapshot(out)
    for _ in range(2):  # the first failure leaves nothing that trips the next
        run = _cli("export", "quickstart", "-o", str(out), "--storage", storage)
        _one_line_error(run, f"-o {out}: No space left on device; nothing was exported")
        assert _snapshot(out) == before
        assert [p.name for p in disk.iterdir()] == ["out"]  # no work folder left beside it


def test_a_full_disk_names_the_folder_that_filled(tmp_path: Path) -> None:
    """--retrain trains in the temporary folder: a full disk there was blamed on -o."""
    import errno

    from tuner.export._export import _RETRAIN_PREFIX, _no_room_is_one_line

    for written, says in [(f"/tmp/{_RETRAIN_PREFIX}x1/best.pt", "point TMPDIR at another disk"),
                          (str(tmp_path / ".out.tuner-export-1" / "model.pt"), "export to another disk with -o")]:
        with pytest.raises(tuner.UserInputError, match=says):
            with _no_room_is_one_line(shown=str(tmp_path / "out")):
                raise OSError(errno.ENOSPC, "No space left on device", written)
