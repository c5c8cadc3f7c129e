"""What ``tuner predict`` and ``tuner.load(...).predict`` take: CSV columns by name, refused inputs
(non-finite, empty, the wrong width, unreadable files) as one-line errors, and labels of their training type.

Two tiny studies, from those trained once per test run (tests/export/conftest.py): the quickstart
MLP on the bundled digits (no feature names, integer labels) and a scikit-learn classifier on an
iris CSV with a header and a string ``label``. This module exports them and trains nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import tuner
from tests.conftest import ROOT
from tests.export.conftest import IRIS_FEATURES, TinyStudies, cli_in_process, copy_storage
from tuner.export import load, read_inputs
from tuner.export._export import CARD_JSON
from tuner.exceptions import UserInputError

FEATURES = IRIS_FEATURES


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tuner.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def _one_line_error(run: subprocess.CompletedProcess[str], *words: str) -> None:
    assert run.returncode == 2, (run.stdout, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    assert all(w in lines[0] for w in words), (words, run.stderr)
    assert "Traceback" not in run.stderr


def _predictions(run: subprocess.CompletedProcess[str]) -> list[str]:
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert lines[0] == "prediction"
    return lines[1:]


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory, tiny_studies: TinyStudies) -> dict[str, Path]:
    """``{"digits": the quickstart MLP's export, "iris": the classifier's trained on it, "iris.csv": its data}``.

    Exported once for the module (on its own copy of the storage); a test that changes an export
    changes a copy of it.
    """
    folder = tmp_path_factory.mktemp("predict")
    url = copy_storage(tiny_studies, folder)
    tuner.export("quickstart", folder / "digits", storage=url, formats=["torchscript"])
    tuner.export("iris_csv", folder / "iris", storage=url)
    return {"digits": folder / "digits", "iris": folder / "iris", "iris.csv": tiny_studies.iris_csv}


# ---- 1. CSV columns are taken by name; no silent drop of a column ----------------------------------------


def test_a_csv_model_selects_its_features_by_name(exports: dict[str, Path], tmp_path: Path) -> None:
    """The successful reads run the command's code in this process (``cli_in_process``), the refusals
    a real ``tuner predict``."""
    out, data = exports["iris"], pd.read_csv(exports["iris.csv"])
    rows = data.iloc[::15]
    expected = [str(v) for v in load(out).predict(rows[FEATURES].to_numpy())]
    assert len(set(expected)) > 1  # the rows span classes: a column mix-up would show
    reordered = rows[FEATURES[::-1]]
    with_id = rows[FEATURES].copy()
    with_id.insert(0, "id", range(1000, 1000 + len(rows)))
    inputs = {"reordered.csv": reordered, "with_id.csv": with_id, "training.csv": rows}  # training: the label too
    for name, frame in inputs.items():
        frame.to_csv(tmp_path / name, index=False)
        assert _predictions(cli_in_process("predict", str(out), str(tmp_path / name))) == expected, name
        assert [str(v) for v in load(out).predict(frame)] == expected, name  # a DataFrame: by name as well
    rows[FEATURES[:3]].to_csv(tmp_path / "missing.csv", index=False)
    _one_line_error(_cli("predict", str(out), str(tmp_path / "missing.csv")), "missing.csv", "'petal_width'")
    rows[FEATURES].to_csv(tmp_path / "no_header.csv", index=False, header=False)
    assert _predictions(cli_in_process("predict", str(out), str(tmp_path / "no_header.csv"))) == expected
    with_id.to_csv(tmp_path / "no_header_id.csv", index=False, header=False)
    _one_line_error(_cli("predict", str(out), str(tmp_path / "no_header_id.csv")),
                    "no_header_id.csv", "5 columns", "4 features")
    card = json.loads((out / CARD_JSON).read_text())
    assert card["schema"]["feature_names"] == FEATURES and card["schema"]["label_column"] == "label"
    # A DataFrame made from an array (columns 0, 1, ...) is refused, with the way to name them.
    model = load(out)
    with pytest.raises(UserInputError) as info:
        model.predict(pd.DataFrame(rows[FEATURES].to_numpy()))
    assert "numbered columns" in str(info.value) and "columns=model.feature_names" in str(info.value)
    assert [str(v) for v in model.predict(pd.DataFrame(rows[FEATURES].to_numpy(), columns=model.feature_names))] == expected
    with pytest.raises(UserInputError) as info:
        model.predict(rows[FEATURES[:3]])  # named, one missing: no hint about numbered columns
    assert "'petal_width'" in str(info.value) and "numbered" not in str(info.value)


def test_without_feature_names_a_width_mismatch_is_refused(exports: dict[str, Path], tmp_path: Path) -> None:
    out = exports["digits"]
    from sklearn.datasets import load_digits

    X, _ = load_digits(return_X_y=True)
    wide = np.column_stack([np.arange(5), X[:5]])  # an id column first, then the 64 features
    np.save(tmp_path / "wide.npy", wide)
    header = ",".join(["id"] + [f"p{i}" for i in range(64)])
    np.savetxt(tmp_path / "wide.csv", wide, delimiter=",", header=header, comments="")
    np.savetxt(tmp_path / "wide_nohead.csv", wide, delimiter=",")
    # the array files' wording in full (the one check of it on the command line)
    words = {"wide.npy": ["wide.npy: 65 features per sample but the model takes 64"],
             "wide.csv": ["wide.csv", "65", "64"], "wide_nohead.csv": ["wide_nohead.csv", "65", "64"]}
    for name, expected in words.items():
        _one_line_error(_cli("predict", str(out), str(tmp_path / name)), *expected)
    with pytest.raises(tuner.UserInputError, match="65 features per sample but the model takes 64"):
        load(out).predict(wide)


# ---- 2. NaN and infinite inputs ---------------------------------------------------------------------------


def test_non_finite_inputs_are_refused(exports: dict[str, Path], tmp_path: Path) -> None:
    X = np.zeros((4, 64))
    X[1, 3], X[3, 0] = np.nan, np.inf
    np.save(tmp_path / "nan.npy", X)
    _one_line_error(_cli("predict", str(exports["digits"]), str(tmp_path / "nan.npy")),
                    "nan.npy", "2 rows", "first: row index 1")
    (tmp_path / "nan.csv").write_text(",".join(FEATURES) + "\n5.1,3.5,1.4,0.2\n5.1,nan,1.4,0.2\n")
    _one_line_error(_cli("predict", str(exports["iris"]), str(tmp_path / "nan.csv")),
                    "nan.csv", "1 row holds", "first: line 3")
    with pytest.raises(tuner.UserInputError, match=r"2 rows hold NaN or infinite values \(first: row index 0\)"):
        load(exports["digits"]).predict(np.full((2, 64), np.nan))
    with pytest.raises(tuner.UserInputError, match="NaN or infinite"):
        load(exports["iris"]).predict_proba(np.array([[1.0, 2.0, np.inf, 0.5]]))


# ---- 3. the output must not overwrite the export ----------------------------------------------------------


def test_predictions_are_never_written_into_the_export(exports: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    out = shutil.copytree(exports["digits"], tmp_path / "export")  # a copy: the other tests keep theirs, whatever
    np.save(tmp_path / "x.npy", np.zeros((2, 64)))
    card = (out / CARD_JSON).read_bytes()
    for target in (out / CARD_JSON, out / "preds.csv"):
        _one_line_error(_cli("predict", str(out), str(tmp_path / "x.npy"), "-o", str(target)),
                        "inside the export folder")
    assert (out / CARD_JSON).read_bytes() == card and not (out / "preds.csv").exists()
    _one_line_error(_cli("predict", str(out), str(tmp_path / "x.npy"), "-o", str(tmp_path / "nowhere" / "out.csv")),
                    "-o", "no such folder")
    for name in ("out.xyz", "out"):  # written as CSV without a word, whatever the name said
        _one_line_error(_cli("predict", str(out), str(tmp_path / "x.npy"), "-o", str(tmp_path / name)),
                        f"-o {tmp_path / name}: predictions are written as CSV or JSON, chosen by the extension; "
                        "name the file e.g. out.csv or out.json")
        assert not (tmp_path / name).exists()


# ---- 4. empty inputs --------------------------------------------------------------------------------------


def test_empty_inputs_are_one_line_errors(exports: dict[str, Path], tmp_path: Path) -> None:
    np.save(tmp_path / "X_empty.npy", np.zeros((0, 64)))
    _one_line_error(_cli("predict", str(exports["digits"]), str(tmp_path / "X_empty.npy")), "no rows in", "X_empty.npy")
    for out, width in ((exports["digits"], 64), (exports["iris"], 4)):
        with pytest.raises(tuner.UserInputError, match="no rows"):
            load(out).predict(np.zeros((0, width)))
    (tmp_path / "header_only.csv").write_text(",".join(f"p{i}" for i in range(64)) + "\n")
    _one_line_error(_cli("predict", str(exports["digits"]), str(tmp_path / "header_only.csv")),
                    "no rows in", "header_only.csv", "only a header")


# ---- 5. messages that say what is wrong -------------------------------------------------------------------


def test_unreadable_inputs_and_folders_say_what_they_are(exports: dict[str, Path], tmp_path: Path) -> None:
    out = exports["digits"]
    (tmp_path / "text.npy").write_text("1,2,3\n")
    _one_line_error(_cli("predict", str(out), str(tmp_path / "text.npy")), "text.npy", "not a NumPy .npy file")
    np.savez(tmp_path / "empty.npz")
    _one_line_error(_cli("predict", str(out), str(tmp_path / "empty.npz")), "empty.npz", "holds no arrays")
    np.save(tmp_path / "x.npy", np.zeros((2, 64)))
    with pytest.raises(tuner.UserInputError, match="x.npy: a file, not an export folder"):
        load(tmp_path / "x.npy")
    _one_line_error(_cli("predict", str(out), str(tmp_path / "x.npy"), "--format", "bogus"),
                    "unknown format 'bogus'", "torchscript", "onnx")


# ---- 6. labels come back with the type they had in the training data --------------------------------------


def test_labels_keep_their_training_type(exports: dict[str, Path], tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    digits = load(exports["digits"])
    pred = digits.predict(X[:200])
    accuracy = np.mean([str(p) == str(t) for p, t in zip(pred, y[:200])])
    assert pred.dtype.kind == "i" and accuracy > 0.2 and (pred == y[:200]).mean() == accuracy  # was 0.0: '3' != 3
    iris = load(exports["iris"]).predict(np.array([[5.1, 3.5, 1.4, 0.2]]))
    assert list(iris) == ["setosa"]  # string labels stay strings
    np.save(tmp_path / "x.npy", X[:3])
    run = _cli("predict", str(exports["digits"]), str(tmp_path / "x.npy"), "-o", str(tmp_path / "p.json"))
    assert run.returncode == 0, run.stderr
    written = [r["prediction"] for r in json.loads((tmp_path / "p.json").read_text())]
    assert written == [int(v) for v in digits.predict(X[:3])]  # numbers in the JSON, not "3"
    card = json.loads((exports["digits"] / CARD_JSON).read_text())
    assert card["schema"]["label_type"] == "int"
    assert card["input"]["layout"].endswith("(images flattened in C, H, W order)")  # digits are 1x8x8 images


# ---- 7. which first row of a CSV is a header: never a row silently lost or added -------------------------


def _numbered_copy(exports: dict[str, Path], tmp_path: Path) -> Path:
    """A copy of the iris export whose card names its features "0".."3", as a model trained on a CSV
    with numbers for column names has them (the card is not checksummed; its model files are)."""
    import shutil

    out = shutil.copytree(exports["iris"], tmp_path / "numbered")
    card = json.loads((out / CARD_JSON).read_text())
    card["schema"]["feature_names"] = ["0", "1", "2", "3"]
    (out / CARD_JSON).write_text(json.dumps(card))
    return out


def test_a_headerless_first_row_with_a_missing_value_is_refused_not_dropped(exports: dict[str, Path],
                                                                            tmp_path: Path) -> None:
    """It used to be taken as a header (a cell that is not a number) and dropped: one prediction fewer, exit 0."""
    from sklearn.datasets import load_digits

    rows = [",".join(str(int(v)) for v in x) for x in load_digits().data[:3]]
    first = rows[0].split(",")
    first[5] = ""
    (tmp_path / "gap.csv").write_text("\n".join([",".join(first), *rows[1:]]) + "\n")
    _one_line_error(_cli("predict", str(exports["digits"]), str(tmp_path / "gap.csv")),
                    "gap.csv line 1", "column 6 is empty", "missing value")
    (tmp_path / "gap_iris.csv").write_text("5.1,,1.4,0.2\n6.2,2.9,4.3,1.3\n")
    with pytest.raises(UserInputError, match=r"gap_iris.csv line 1: column 2 is empty \(a missing value\)"):
        read_inputs(tmp_path / "gap_iris.csv", n_features=4, feature_names=FEATURES)
    (tmp_path / "gap_later.csv").write_text(",".join(FEATURES) + "\n5.1,3.5,1.4,0.2\n6.2,,4.3,1.3\n")
    with pytest.raises(UserInputError, match=r"gap_later.csv line 3: column 'sepal_width' is empty"):
        read_inputs(tmp_path / "gap_later.csv", n_features=4, feature_names=FEATURES)


def test_a_headerless_training_file_with_text_labels_gives_no_feature_names(exports: dict[str, Path],
                                                                            tmp_path: Path) -> None:
    """Its first sample was read as the header: the card named the features 5.1, 3.5, ..., so an input whose
    first row was that sample lost it (4 predictions for 5 rows)."""
    from types import SimpleNamespace

    from tuner.export._predictor import _schema

    data = pd.read_csv(exports["iris.csv"])
    data.to_csv(tmp_path / "train.csv", index=False, header=False)  # 5.1,3.5,1.4,0.2,Iris-setosa ...
    data.to_csv(tmp_path / "train_header.csv", index=False)

    def feature_names(dataset: str) -> list[str] | None:
        trained = SimpleNamespace(task_type="classification", kind="torch", task_args={"dataset": dataset},
                                  data={"class_names": ["a"], "n_features": 4})
        return _schema(trained)["feature_names"]  # type: ignore[arg-type]

    assert feature_names(str(tmp_path / "train.csv")) is None
    assert feature_names(str(tmp_path / "train_header.csv")) == FEATURES


def test_a_headerless_input_with_its_text_labels_is_refused_for_its_width(exports: dict[str, Path],
                                                                          tmp_path: Path) -> None:
    """Its first row (the features and a class name) was taken for a header: a sample lost, then the label
    column reported as a feature that is not a number."""
    from sklearn.datasets import load_digits

    rows = [",".join(str(int(v)) for v in x) + ",seven" for x in load_digits().data[:5]]
    (tmp_path / "labelled.csv").write_text("\n".join(rows) + "\n")
    _one_line_error(_cli("predict", str(exports["digits"]), str(tmp_path / "labelled.csv")),
                    "labelled.csv: 65 columns per row but the model takes 64 features")


def test_pandas_numbered_header_is_a_header_and_never_a_sample(exports: dict[str, Path], tmp_path: Path) -> None:
    """``pd.DataFrame(X).to_csv(index=False)`` writes ``0,1,...,63`` first: it was predicted as a sample."""
    from sklearn.datasets import load_digits

    X = load_digits().data[:5]  # floats: pandas writes 5.0, the header 5
    expected = [str(v) for v in load(exports["digits"]).predict(X)]
    pd.DataFrame(X).to_csv(tmp_path / "numbered.csv", index=False)
    assert _predictions(cli_in_process("predict", str(exports["digits"]), str(tmp_path / "numbered.csv"))) == expected
    # integer data under the same header: either could be a sample, so it is refused with the ways out
    pd.DataFrame(X.astype(int)).to_csv(tmp_path / "numbered_int.csv", index=False)
    with pytest.raises(UserInputError, match="numbered_int.csv line 1: reads 0,1,...,63.*header=False"):
        read_inputs(tmp_path / "numbered_int.csv", n_features=64)
    pd.DataFrame(X.astype(int)).to_csv(tmp_path / "plain_int.csv", index=False, header=False)  # no header: all rows
    assert read_inputs(tmp_path / "plain_int.csv", n_features=64).shape == (5, 64)
    pd.DataFrame(X).to_csv(tmp_path / "with_index.csv")  # the index column is no feature
    with pytest.raises(UserInputError, match=r"with_index.csv line 1: pandas' header with its index.*index=False"):
        read_inputs(tmp_path / "with_index.csv", n_features=64)
    # a model that takes its columns by name refuses numbered ones, as for a DataFrame made from an array
    pd.DataFrame(pd.read_csv(exports["iris.csv"])[FEATURES].to_numpy()[:5]).to_csv(tmp_path / "iris_num.csv",
                                                                                  index=False)
    _one_line_error(_cli("predict", str(exports["iris"]), str(tmp_path / "iris_num.csv")),
                    "iris_num.csv line 1", "numbered 0..3", "columns=model.feature_names")


def test_a_byte_order_mark_is_not_part_of_the_first_row(exports: dict[str, Path], tmp_path: Path) -> None:
    """Excel's and pandas' ``utf-8-sig``: it made a numeric first row a header (a row lost) and a
    header's first name ``\\ufeffsepal_length`` (a column "missing")."""
    from sklearn.datasets import load_digits

    X = load_digits().data[:5]
    expected = [str(v) for v in load(exports["digits"]).predict(X)]
    pd.DataFrame(X).to_csv(tmp_path / "bom.csv", index=False, header=False, encoding="utf-8-sig")
    assert (tmp_path / "bom.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    assert _predictions(cli_in_process("predict", str(exports["digits"]), str(tmp_path / "bom.csv"))) == expected
    rows = pd.read_csv(exports["iris.csv"]).iloc[::15]
    expected = [str(v) for v in load(exports["iris"]).predict(rows[FEATURES].to_numpy())]
    rows.to_csv(tmp_path / "bom_header.csv", index=False, encoding="utf-8-sig")
    assert _predictions(cli_in_process("predict", str(exports["iris"]), str(tmp_path / "bom_header.csv"))) == expected
    assert [str(v) for v in load(exports["iris"]).predict(pd.read_csv(tmp_path / "bom_header.csv"))] == expected


def test_numbers_as_feature_names_make_a_header(exports: dict[str, Path], tmp_path: Path) -> None:
    """A model trained on a CSV whose columns are named 0..3: the same header on its inputs was read as a sample."""
    out = _numbered_copy(exports, tmp_path)
    data = pd.read_csv(exports["iris.csv"]).iloc[::15]
    values = data[FEATURES].to_numpy()
    expected = [str(v) for v in load(out).predict(values)]
    frame = pd.DataFrame(values, columns=["0", "1", "2", "3"])
    frame.to_csv(tmp_path / "named.csv", index=False)
    frame[["3", "1", "0", "2"]].to_csv(tmp_path / "shuffled.csv", index=False)  # by name, in any order
    for name in ("named.csv", "shuffled.csv"):
        assert _predictions(cli_in_process("predict", str(out), str(tmp_path / name))) == expected, name
        assert [str(v) for v in load(out).predict(pd.read_csv(tmp_path / name))] == expected, name
    frame.assign(label=data["label"].to_numpy()).to_csv(tmp_path / "with_label.csv", index=False)
    assert _predictions(cli_in_process("predict", str(out), str(tmp_path / "with_label.csv"))) == expected
