"""tuner export / tuner.load / tuner predict on tiny studies of every exportable built-in task (real Ray, SQLite).

The studies are trained once per test run (``tiny_studies``, tests/export/conftest.py); this
module works on its own copy of their storage.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest

import tuner
from tests.conftest import ROOT
from tests.export.conftest import SLOW_STUDIES, STUDIES, TINY, TinyStudies, cli_in_process, copy_storage, run_tiny
from tuner.export import load, read_inputs
from tuner.export._export import CARD_JSON

KIND = {"sklearn_gbm": "sklearn", "text_finetune": "text"}

# The text model's study and exports take minutes on 2 CPUs: its tests run with `-m slow`
# (and in bench/tasks_text.py); the text task itself is tested in tests/tasks.
slow_text = pytest.mark.slow


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory, tiny_studies: TinyStudies) -> str:
    """This module's copy of the tiny studies' storage: its exports are recorded there, its studies added there."""
    return copy_storage(tiny_studies, tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="module")
def text_storage(storage: str, ray_cluster: None) -> str:
    """``storage`` with the text study in it too (run only when a slow text test asks)."""
    run_tiny(storage, Path(storage.removeprefix("sqlite:///")).parent, "text_finetune")
    return storage


def _storage_for(study: str, request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("text_storage" if study in SLOW_STUDIES else "storage")


def _studies(names: list[str]) -> list[Any]:
    return [pytest.param(n, marks=slow_text) if n in SLOW_STUDIES else n for n in names]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tuner.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("study", _studies(list(TINY)))
def test_export_every_format_checks_and_reloads(request: pytest.FixtureRequest, tmp_path: Path, study: str) -> None:
    storage = _storage_for(study, request)
    out = tmp_path / "best"
    result = tuner.export(study, out, storage=storage)
    best = optuna.load_study(study_name=study, storage=storage).best_trial
    assert result.trial == best.number
    card = json.loads((out / CARD_JSON).read_text())
    kind = KIND.get(study, "torch")
    expected = ["sklearn"] if kind == "sklearn" else ["state_dict", "torchscript", "onnx", "exported_program"]
    assert list(card["files"]) == expected and card["kind"] == kind
    for name in expected:
        assert (out / card["files"][name]["file"]).is_file()
        assert card["checks"][name]["max_abs_diff"] <= 1e-4
        key = "test_rmse" if study == "diabetes_mlp" else "test_accuracy"
        assert card["checks"][name][key] == pytest.approx(card["recorded_test"][key], abs=0.005 * max(1.0, card["recorded_test"][key]))
    assert card["params"] and card["versions"]["tuner"] == tuner.__version__
    assert card["data"]["split_seed"] is not None and (out / "model_card.md").read_text().startswith("# Model card")
    if kind == "torch":
        assert len(card["preprocessing"]["mean"]) == card["input"]["shape"][1]
    if kind == "text":
        assert (out / "tokenizer" / "tokenizer.json").is_file() and card["input"]["dtype"] == "int64"

    # every exported file, loaded on its own, predicts as the others do
    X = _test_inputs(card)
    answers = []
    for name in expected:
        predictor = load(out, format=name)
        answers.append(predictor.predict(X))
        if study != "diabetes_mlp":
            proba = predictor.predict_proba(X)
            assert proba.shape == (len(X), len(card["class_names"])) and np.allclose(proba.sum(axis=1), 1.0)
            assert {str(v) for v in answers[-1]} <= set(card["class_names"])  # labels keep their type (digits: ints)
    for other in answers[1:]:
        if study == "diabetes_mlp":
            assert np.allclose(other, answers[0], atol=1e-3)
        else:
            assert list(other) == list(answers[0])


def _test_inputs(card: dict[str, Any]) -> np.ndarray:
    from tuner.tasks import get_task

    task = get_task(card["task"])(card["data"]["task_args"], source="test")
    if card["kind"] == "text":  # a text model's predictor takes the sentences themselves
        return list(task.load_texts().test.texts[:20])  # type: ignore[return-value]
    data = task.load_data()
    if card["kind"] == "sklearn":
        return np.asarray(data.X_test[:20], dtype=np.float32)
    return (data.test.X[:20] * data.std + data.mean).astype(np.float32)


def test_tuner_predict_reads_npy_npz_and_csv(storage: str, tmp_path: Path) -> None:
    """Each input type through the command's own code, in this process (``cli_in_process``); the
    run that writes a JSON file is a real ``tuner predict`` process."""
    out = tmp_path / "qs"
    tuner.export("quickstart", out, storage=storage, formats=["torchscript"])
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    np.save(tmp_path / "x.npy", X[:10])
    np.savez(tmp_path / "x.npz", X=X[:10])
    np.savetxt(tmp_path / "x.csv", np.column_stack([X[:10], y[:10]]), delimiter=",", header=",".join(
        [f"p{i}" for i in range(64)] + ["label"]), comments="")
    expected = [str(v) for v in load(out).predict(X[:10])]
    for name in ("x.npy", "x.npz", "x.csv"):
        run = cli_in_process("predict", str(out), str(tmp_path / name))
        assert run.returncode == 0, run.stderr
        lines = run.stdout.strip().splitlines()
        assert lines[0] == "prediction" and lines[1:] == expected, name
    run = _cli("predict", str(out), str(tmp_path / "x.npy"), "--proba", "-o", str(tmp_path / "p.json"))
    assert run.returncode == 0, run.stderr
    rows = json.loads((tmp_path / "p.json").read_text())
    assert len(rows) == 10 and abs(sum(v for k, v in rows[0].items() if k.startswith("p_")) - 1) < 1e-6
    assert [str(r["prediction"]) for r in rows] == expected


def test_an_exported_state_dict_is_a_pretrained_checkpoint(storage: str, tmp_path: Path,
                                                            ray_cluster: None) -> None:
    """The only test here that trains (a fine-tuning study): the module's Ray starts for it."""
    out = tmp_path / "pre"
    tuner.export("resnet_pretrain", out, storage=storage, formats=["state_dict"])
    study = tuner.run(STUDIES / "resnet_finetune.yaml", storage=storage, overrides={
        "name": "ft_from_export", "n_trials": 1, "concurrency": 1, "pruner": "none",
        "artifacts_dir": str(tmp_path / "runs"), "task_args.pretrained": str(out / "model.pt"),
        "search_space": {"include": ["finetune.yaml"], "params": {"epochs": 1, "batch_size": 16}}})
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE, trial.system_attrs.get("tuner:error")
    assert trial.system_attrs["tuner:attr:pretrained"]["checkpoint"] == str(out / "model.pt")


# ---- errors: one line, exit code 2 ------------------------------------------------------------------------


def _one_line_error(run: subprocess.CompletedProcess[str], words: str) -> None:
    assert run.returncode == 2, (run.stdout, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], run.stderr
    assert "Traceback" not in run.stderr


def test_export_errors(storage: str, tmp_path: Path) -> None:
    db = storage
    _one_line_error(_cli("export", "nope", "-o", str(tmp_path / "a"), "--storage", db), "nope")
    _one_line_error(_cli("export", "quickstart", "-o", str(tmp_path / "b"), "--storage", db, "--format", "tflite"),
                    "unknown format 'tflite'")
    _one_line_error(_cli("export", "sklearn_gbm", "-o", str(tmp_path / "c"), "--storage", db, "--format", "onnx"),
                    "does not apply to a sklearn model")
    _one_line_error(_cli("export", "quickstart", "-o", str(tmp_path / "d"), "--storage", db, "--trial", "99"),
                    "no trial 99")
    _one_line_error(_cli("export", "quickstart", "-o", str(tmp_path / "d"), "--storage", db, "--trial", str(2**64)),
                    f"no trial {2**64}")  # past what SQLite binds: not an OverflowError
    (tmp_path / "file").write_text("x")
    _one_line_error(_cli("export", "quickstart", "-o", str(tmp_path / "file"), "--storage", db), "it is a file")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    _one_line_error(_cli("export", "quickstart", "-o", str(tmp_path / "full"), "--storage", db), "not empty")
    assert (tmp_path / "full" / "notes.txt").read_text() == "mine"


def test_a_multi_objective_study_asks_which_trial(storage: str, tmp_path: Path) -> None:
    """A study with several objectives has no single best trial: the error lists its Pareto front.
    (A study of a Python objective, which saved no checkpoint: test_export_safety.py.)"""
    mo = optuna.create_study(study_name="two", storage=storage, directions=["maximize", "minimize"])
    mo.optimize(lambda t: (t.suggest_float("a", 0, 1), t.suggest_float("b", 0, 1)), n_trials=4)
    front = sorted(t.number for t in mo.best_trials)
    _one_line_error(_cli("export", "two", "-o", str(tmp_path / "m"), "--storage", storage),
                    f"--trial ({', '.join(map(str, front))})")


def test_broken_export_folders(storage: str, tmp_path: Path) -> None:
    """A missing, tampered-with or unreadable export, or a missing input file: one-line errors.
    (An input of the wrong width: test_predict_inputs.py.)"""
    out = tmp_path / "x"
    tuner.export("quickstart", out, storage=storage, formats=["torchscript", "state_dict"])
    np.save(tmp_path / "in.npy", np.zeros((2, 64), dtype=np.float32))
    _one_line_error(_cli("predict", str(tmp_path / "missing"), str(tmp_path / "in.npy")), "no such export folder")
    _one_line_error(_cli("predict", str(out), str(tmp_path / "nothere.csv")), "no such input file")
    with open(out / "model.torchscript.pt", "ab") as fh:  # tampered with after the export
        fh.write(b"!")
    _one_line_error(_cli("predict", str(out), str(tmp_path / "in.npy")), "SHA-256 does not match")
    # the other files still serve (the command's code in this process: nothing here is about an error)
    assert cli_in_process("predict", str(out), str(tmp_path / "in.npy"), "--format", "state_dict").returncode == 0
    (out / "model.pt").unlink()
    _one_line_error(_cli("predict", str(out), str(tmp_path / "in.npy"), "--format", "state_dict"), "model.pt is missing")
    (out / CARD_JSON).write_text("{not json")
    _one_line_error(_cli("predict", str(out), str(tmp_path / "in.npy")), "not a tuner export")
    with pytest.raises(tuner.UserInputError, match="unsupported input type"):
        read_inputs(__file__)


@pytest.mark.parametrize("study", ["digits_cnn"])
def test_int8_quantization_reports_size_and_accuracy_change(storage: str, tmp_path: Path, study: str) -> None:
    out = tmp_path / "q"
    result = tuner.export(study, out, storage=storage, formats=["torchscript"], quantize="int8")
    check = result.checks["torchscript_int8"]
    fp32 = result.checks["torchscript"]
    assert check["size_ratio"] > 0  # tiny test networks: the packed int8 weights barely change the file size
    import torch

    code = torch.jit.load(str(out / "model.int8.torchscript.pt")).inlined_graph
    assert "quantized::linear_dynamic" in str(code)  # the linear layers really run in int8
    assert check["test_accuracy_change"] == pytest.approx(check["test_accuracy"] - result.card["recorded_test"]["test_accuracy"])
    assert abs(check["test_accuracy_change"]) <= 0.1 and fp32["max_abs_diff"] <= 1e-4
    predictor = load(out, format="torchscript_int8")
    X = _test_inputs(result.card)
    agree = np.mean(predictor.predict(X) == load(out, format="torchscript").predict(X))
    assert agree >= 0.8
    # An export of int8 alone is loaded from it ("the model card lists no model file" before).
    tuner.export(study, tmp_path / "q8", storage=storage, formats=["torchscript_int8"])
    alone = load(tmp_path / "q8")
    assert alone.format == "torchscript_int8"
    assert np.array_equal(alone.predict(X), predictor.predict(X))
    np.save(tmp_path / "in.npy", X)
    run = _cli("predict", str(tmp_path / "q8"), str(tmp_path / "in.npy"))
    assert run.returncode == 0 and len(run.stdout.splitlines()) == len(X) + 1, run.stderr  # a header line, then rows
    # --quantize on a sklearn model: test_export_safety.py


def test_the_dashboard_lists_and_serves_a_trials_exports(storage: str, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from tuner.dashboard import create_app

    out = tmp_path / "dash-export"
    result = tuner.export("digits_cnn", out, storage=storage, formats=["onnx", "state_dict"])
    with TestClient(create_app(storage)) as c:
        trial = c.get(f"/api/studies/digits_cnn/trials/{result.trial}").json()
        entry = next(e for e in trial["exports"] if e["folder"] == str(out.resolve()))
        files = {f["format"]: f for f in entry["files"]}
        assert set(files) == {"onnx", "state_dict", "model_card.json", "model_card.md"}
        assert all(f["exists"] for f in files.values())
        base = f"/api/studies/digits_cnn/trials/{result.trial}/exports/{entry['index']}"
        res = c.get(f"{base}/model.onnx")
        assert res.status_code == 200 and res.content == (out / "model.onnx").read_bytes()
        assert c.get(f"{base}/model_card.json").json()["trial"] == result.trial
        for attempt in ("..%2Ftuner.db", "model.torchscript.pt", "%2Fetc%2Fpasswd"):
            assert c.get(f"{base}/{attempt}").status_code == 404, attempt
        other = next(n for n in range(2) if n != result.trial)
        assert c.get(f"/api/studies/digits_cnn/trials/{other}/exports/{entry['index']}/model.onnx").status_code == 404
        page = c.get(f"/studies/digits_cnn/trials/{result.trial}").text
        assert f'{base}/model.onnx"' in page and "export-download" in page


@pytest.mark.parametrize("study", _studies(["diabetes_mlp", "sklearn_gbm", "text_finetune"]))
def test_retrain_on_train_and_validation(request: pytest.FixtureRequest, tmp_path: Path, study: str) -> None:
    storage = _storage_for(study, request)
    out = tmp_path / "re"
    result = tuner.export(study, out, storage=storage, retrain=True,
                          formats=None if study == "sklearn_gbm" else ["torchscript", "state_dict"])
    info = result.card["retrained"]
    if study == "sklearn_gbm":
        assert "already refit" in info["note"]
        return
    best = optuna.load_study(study_name=study, storage=storage).best_trial
    metrics = best.system_attrs["tuner:metrics"]
    assert info["epochs"] == int(metrics["best_epoch"])
    sizes = result.card["data"]["sizes"]
    assert info["train_samples"] == sizes["train"]  # the retrained model's data description: train = train + val
    key = "test_rmse" if study == "diabetes_mlp" else "test_accuracy"
    assert info[f"trial_{key}"] == pytest.approx(metrics[key])
    assert result.card["recorded_test"][key] == pytest.approx(info[key])  # the exports reproduce the retrained model
    for name, check in result.checks.items():
        assert check["max_abs_diff"] <= 1e-4, name
    assert load(out).predict(_test_inputs(result.card)).shape[0] == min(20, sizes["test"])


def test_a_retrain_that_diverges_is_a_one_line_error(storage: str, tmp_path: Path) -> None:
    """Re-training on train + validation can diverge where the trial did not (more data per epoch,
    the same lr): with no finite epoch to export, --retrain says so instead of a traceback."""
    from tuner.exceptions import UserInputError
    from tuner.export._export import _retrain
    from tuner.export._trained import load_trained

    best = optuna.load_study(study_name="quickstart", storage=storage).best_trial
    trained = load_trained(Path(best.system_attrs["tuner:worker"]["trial_dir"]) / "best.pt")
    # Whatever configuration won, a step that overflows float32 and nothing to tame it (at lr 1e6
    # a best trial with grad_clip 5 and warm-up trained, and a 1-layer tanh net stayed finite).
    trained.params = {**trained.params, "optimizer": "sgd", "lr": 1.0e30, "grad_clip": None, "warmup_frac": 0.0}
    with pytest.raises(UserInputError, match=r"^--retrain: trial 7's configuration did not train on train \+ "
                                             r"validation: training diverged at epoch 1 .*without --retrain$"):
        _retrain(trained, 7, tmp_path / "work")


@slow_text
def test_tuner_predict_reads_sentences_for_a_text_model(text_storage: str, tmp_path: Path) -> None:
    storage = text_storage
    out = tmp_path / "txt"
    tuner.export("text_finetune", out, storage=storage, formats=["onnx"])
    (tmp_path / "in.csv").write_text('id,text\n1,"a warm, funny and moving film"\n2,dull and lifeless\n')
    (tmp_path / "in.txt").write_text("a warm, funny and moving film\ndull and lifeless\n")
    expected = [str(v) for v in load(out).predict(["a warm, funny and moving film", "dull and lifeless"])]
    for name in ("in.csv", "in.txt"):
        run = _cli("predict", str(out), str(tmp_path / name), "--proba")
        assert run.returncode == 0, run.stderr
        lines = run.stdout.strip().splitlines()
        assert lines[0] == "prediction,p_neg,p_pos" and [line.split(",")[0] for line in lines[1:]] == expected
    (tmp_path / "bad.csv").write_text("id,sentence\n1,x\n")
    _one_line_error(_cli("predict", str(out), str(tmp_path / "bad.csv")), "no column")
