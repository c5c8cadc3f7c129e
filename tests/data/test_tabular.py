"""Local .npz and .csv files: parsing, labels, errors, and the shared splitting."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from tuner.data import check_dataset, load_dataset, load_tabular, make_regression_splits, make_splits, split_sizes
from tuner.data.tabular import read_csv_header
from tuner.data.text import split_indices
from tuner.exceptions import SpecError


def _table(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)).astype(np.float32)
    y = np.arange(n) % 3
    return X, y


@pytest.mark.parametrize("x_key", ["X", "x"])
def test_npz_with_x_and_y(tmp_path: Path, x_key: str) -> None:
    X, y = _table()
    path = tmp_path / "d.npz"
    np.savez(path, **{x_key: X, "y": y})
    s = load_tabular(path, split_seed=1)
    assert s.name == "d.npz" and s.n_features == 3 and s.n_classes == 3 and s.input_shape == (3,)
    assert s.class_names == ("0", "1", "2")
    assert (len(s.train), len(s.val), len(s.test)) == (84, 18, 18)
    assert [np.bincount(p.y).tolist() for p in (s.train, s.val, s.test)] == [[28] * 3, [6] * 3, [6] * 3]
    np.testing.assert_allclose(s.train.X.mean(axis=0), 0, atol=1e-5)
    raw = load_tabular(path, split_seed=1, standardize=False)
    np.testing.assert_allclose(s.mean, raw.train.X.mean(axis=0), atol=1e-5)  # train statistics
    np.testing.assert_array_equal(load_tabular(path, split_seed=1).val.X, s.val.X)  # seeded


def test_npz_images_and_sparse_integer_labels(tmp_path: Path) -> None:
    X = np.random.default_rng(0).random((40, 5, 5))
    y = np.repeat([3, 7, 10, 20], 10)
    np.savez(tmp_path / "img.npz", X=X, y=y)
    s = load_tabular(tmp_path / "img.npz")
    assert s.input_shape == (1, 5, 5) and s.n_features == 25
    assert s.class_names == ("3", "7", "10", "20") and s.n_classes == 4
    assert set(np.concatenate([s.train.y, s.val.y, s.test.y]).tolist()) == {0, 1, 2, 3}


def test_npz_with_wrong_keys(tmp_path: Path) -> None:
    np.savez(tmp_path / "bad.npz", features=np.zeros((4, 2)), y=np.zeros(4))
    with pytest.raises(SpecError) as info:
        load_tabular(tmp_path / "bad.npz", source="s.yaml", key="task_args.dataset")
    assert info.value.path == "task_args.dataset"
    assert "['features', 'y']" in str(info.value) and "save the features as X" in str(info.value)


def _write_csv(path: Path, header: str | None, rows: list[str]) -> Path:
    path.write_text("\n".join(([header] if header else []) + rows) + "\n")
    return path


def test_csv_with_header_uses_the_label_column(tmp_path: Path) -> None:
    rows = [f"{i},{i % 2 and 'cat' or 'dog'},{i * 0.5}" for i in range(40)]
    s = load_tabular(_write_csv(tmp_path / "t.csv", "a,label,b", rows), standardize=False)
    assert s.n_features == 2 and s.class_names == ("cat", "dog")
    X = np.concatenate([s.train.X, s.val.X, s.test.X])
    y = np.concatenate([s.train.y, s.val.y, s.test.y])
    assert np.all(X[:, 1] == X[:, 0] * 0.5)  # the label column was removed, features kept in order
    assert np.all((X[:, 0] % 2 == 1) == (y == 0))  # odd rows are 'cat' (class 0)


def test_csv_without_header_uses_the_last_column(tmp_path: Path) -> None:
    rows = [f"{i},{-i},{i % 4}" for i in range(40)]
    s = load_tabular(_write_csv(tmp_path / "t.csv", None, rows))
    assert s.n_features == 2 and s.class_names == ("0", "1", "2", "3")
    assert len(s.train) + len(s.val) + len(s.test) == 40


def test_csv_label_by_name_or_index(tmp_path: Path) -> None:
    rows = [f"{i % 2},{i},{i * 2}" for i in range(30)]
    path = _write_csv(tmp_path / "t.csv", "target,a,b", rows)
    by_name = load_tabular(path, label="target")
    by_index = load_tabular(path, label=0)
    assert by_name.class_names == by_index.class_names == ("0", "1")
    np.testing.assert_array_equal(by_name.train.X, by_index.train.X)
    assert load_tabular(path).n_classes == 30  # default: last column 'b'
    with pytest.raises(SpecError) as info:
        load_tabular(path, label="y", key="task_args.dataset")
    assert info.value.path == "task_args.label" and "columns are ['target', 'a', 'b']" in str(info.value)
    with pytest.raises(SpecError, match="out of range"):
        load_tabular(path, label=5)


def test_csv_numeric_labels_written_differently_are_one_class(tmp_path: Path) -> None:
    rows = [f"{i},{'1.0' if i % 3 == 0 else '1' if i % 3 == 1 else '10'}" for i in range(30)]
    s = load_tabular(_write_csv(tmp_path / "t.csv", "a,label", rows))
    assert s.class_names == ("1", "10")


def test_a_headerless_csv_with_text_labels_keeps_its_first_sample(tmp_path: Path) -> None:
    # Its first row (5.1,3.5,1.4,0.2,Iris-setosa) was taken for a header: 149 samples, features named 5.1, ...
    from sklearn.datasets import load_iris

    iris = load_iris()
    names = ["Iris-setosa", "Iris-versicolor", "Iris-virginica"]
    path = _write_csv(tmp_path / "iris.csv", None, [",".join(f"{v:g}" for v in x) + f",{names[t]}"
                                                    for x, t in zip(iris.data, iris.target)])
    s = load_tabular(path, standardize=False)
    assert len(s.train) + len(s.val) + len(s.test) == 150 and s.class_names == tuple(names)
    assert read_csv_header(path) is None
    X = np.concatenate([s.train.X, s.val.X, s.test.X])
    assert any(np.allclose(row, [5.1, 3.5, 1.4, 0.2]) for row in X)


@pytest.mark.parametrize("first, header", [
    ("a,b,label", ["a", "b", "label"]),
    ("0,1,label", ["0", "1", "label"]),  # numbered features (pandas) and a named label
    ("0,1,species", ["0", "1", "species"]),  # a name the label column does not hold
    ("id,1.5,cat", ["id", "1.5", "cat"]),  # 'id' names its column even though 'cat' is a class
    (",a,b", ["", "a", "b"]),  # pandas' index column
    ("1.5,2.5,cat", None),  # a sample: 'cat' is a class of the rows below
    ("\ufeff1.5,2.5,cat", None),  # a byte-order mark is not part of the first cell
    ("1.5,2.5,0", None),
])
def test_the_header_is_told_by_its_names(tmp_path: Path, first: str, header: list[str] | None) -> None:
    rows = [f"{i}.5,{-i},{'cat' if i % 2 else 'dog'}" for i in range(20)]
    path = tmp_path / "t.csv"
    path.write_text(first + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    assert read_csv_header(path) == header
    if header and header[0] == "":  # pandas' index column: refused, not trained on (the test below)
        with pytest.raises(SpecError, match="the first column has no name: pandas' index column"):
            load_tabular(path, label=2)
        return
    s = load_tabular(path)
    assert len(s.train) + len(s.val) + len(s.test) == (20 if header else 21)


@pytest.mark.parametrize("content, words", [
    ("a,label\n1,x\nfoo,y\n", "line 3: feature 'foo' is not a number"),
    ("a,b,label\n1,2,x\n1,y\n", "line 3: 2 fields, expected 3"),
    # A missing value or label is named as one (an empty label was a class '', a 'nan' label a class 'nan').
    ("a,b,label\n1,,x\n2,3,y\n", "line 2: missing value in feature 'b'; fill or drop rows with missing values"),
    ("a,b,label\n1,2,x\n\n2,nan,y\n", "line 4: missing value (NaN) in feature 'b'; fill or drop rows"),
    ("1,2,0\n3,4,1\n,5,1\n", "line 3: missing value in column 1; fill or drop rows"),
    ("a,b,label\n1,2,x\n2,inf,y\n", "line 3: feature 'b' is infinite"),
    ("a,label\n1,0\n2,0\n3,\n4,0\n", "line 4: empty label; give every row a label"),
    ("a,label\n1,0\n2,1\n3,nan\n4,0\n", "line 4: label 'nan' is a missing value; give every row a label"),
    ("", "is empty"),
    ("label\nx\n", "needs at least one feature column"),
    (",0,1\n0,1.5,x\n1,2.5,y\n", "line 1: pandas' header with its index column (an unnamed first column, then 0, "
                                  "1, ...); write the file with to_csv(index=False)"),
    ("a,label\n1,x\n2,x\n3,x\n", "single class"),
])
def test_bad_csv_is_a_spec_error(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(SpecError) as info:
        load_tabular(path, source="s.yaml", key="task_args.dataset")
    assert info.value.path == "task_args.dataset" and words in str(info.value)


@pytest.mark.parametrize("y", [[0.0, 1.0, np.nan, 1.0], ["a", "b", "", "a"]])
def test_a_missing_label_in_an_npz_is_a_spec_error(tmp_path: Path, y: list) -> None:
    np.savez(tmp_path / "d.npz", X=np.zeros((4, 2)), y=np.asarray(y))
    with pytest.raises(SpecError, match=r"d.npz: y\[2\] is a missing label \('(nan)?'\); give every sample a label"):
        load_tabular(tmp_path / "d.npz")


@pytest.mark.parametrize("split", [(0.7, 0.15, 0.15), (0.9, 0.05, 0.05), (0.5, 0.25, 0.25), (0.8, 0.15, 0.05)])
def test_split_sizes_are_the_parts_every_split_cuts(split: tuple[float, float, float]) -> None:
    # One rule: validation's check of a built-in set and the scikit-learn task count with it.
    for n in range(2, 41):
        X, y = np.zeros((n, 1)), np.arange(n) % 2
        sizes = split_sizes(n, split)
        s = make_splits(X, y, name="t", class_names=["a", "b"], split=split)
        r = make_regression_splits(X, y.astype(float), name="t", split=split)
        for parts in ((s.train, s.val, s.test), (r.train, r.val, r.test), split_indices(y, split=split)):
            assert tuple(len(p) for p in parts) == sizes, (n, split)


def test_check_dataset_resolves_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec_dir = tmp_path / "studies"
    spec_dir.mkdir()
    X, y = _table()
    np.savez(spec_dir / "near_spec.npz", X=X, y=y)
    np.savez(tmp_path / "in_cwd.npz", X=X, y=y)
    monkeypatch.chdir(tmp_path)
    assert check_dataset("digits") == "digits"
    assert check_dataset("near_spec.npz", base_dir=spec_dir) == str((spec_dir / "near_spec.npz").resolve())
    assert check_dataset("in_cwd.npz", base_dir=spec_dir) == str((tmp_path / "in_cwd.npz").resolve())
    with pytest.raises(SpecError) as info:
        check_dataset("nope.csv", base_dir=spec_dir, source="studies/x.yaml", key="task_args.dataset")
    assert str(info.value).startswith("studies/x.yaml: task_args.dataset: file 'nope.csv' not found")
    with pytest.raises(SpecError, match="unknown data set 'data.parquet'"):
        check_dataset("data.parquet")
    with pytest.raises(SpecError, match="expected a data set name"):
        check_dataset(3)
    s = load_dataset("in_cwd.npz", max_samples=60, split_seed=4)
    assert len(s.train) + len(s.val) + len(s.test) == 60


def test_pandas_csvs_of_an_array_or_with_the_index_are_read_as_pandas_wrote_them(tmp_path: Path) -> None:
    """`pd.DataFrame(np.c_[X, y]).to_csv(index=False)` writes the header 0,1,...,k: it was trained on as
    a sample (a class '4' of one); `df.to_csv(path)` writes the index as an unnamed first column: it
    was trained on as a feature."""
    import pandas as pd

    from tuner.data.tabular import read_table

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4))
    y = (X[:, 0] > 0).astype(int)
    pd.DataFrame(np.c_[X, y]).to_csv(tmp_path / "numbered.csv", index=False)
    features, labels, names, _ = read_table(tmp_path / "numbered.csv", source="s.yaml", key="task_args.dataset")
    assert features.shape == (40, 4) and len(names) == 2 and len(labels) == 40
    np.testing.assert_allclose(features, X, rtol=1e-6)
    assert read_csv_header(tmp_path / "numbered.csv") == ["0", "1", "2", "3", "4"]  # the card's names: the same rule
    # over integer data the first row could be a sample: refused with the ways out
    pd.DataFrame(np.c_[(X * 10).astype(int), y]).to_csv(tmp_path / "ints.csv", index=False)
    with pytest.raises(SpecError, match=r"line 1: the first row reads 0, 1, \.\.\. over integer data: .*; name the "
                                        r"columns \(a header of names\) or write the file with to_csv\(header=False\)"):
        read_table(tmp_path / "ints.csv", source="s.yaml", key="task_args.dataset")
    frame = pd.DataFrame(X[:, :2], columns=["a", "b"])
    frame["label"] = np.where(y == 1, "pos", "neg")
    frame.to_csv(tmp_path / "indexed.csv")
    with pytest.raises(SpecError, match=r"indexed\.csv line 1: the first column has no name: pandas' index column\?; "
                                        r"write the file with to_csv\(index=False\), or name it"):
        read_table(tmp_path / "indexed.csv", source="s.yaml", key="task_args.dataset")
    frame.to_csv(tmp_path / "plain.csv", index=False)
    assert read_table(tmp_path / "plain.csv")[0].shape == (40, 2)


@pytest.mark.parametrize(("cell", "where"), [("NA", "label"), ("N/A", "label"), ("NULL", "label"), ("NA", "feature"),
                                              ("None", "feature"), ("?", "feature")])
def test_missing_values_as_r_excel_and_pandas_write_them_are_refused_as_missing(tmp_path: Path, cell: str,
                                                                               where: str) -> None:
    # R's write.csv writes NA: as a label it was a class of its own; as a feature it was "not a number".
    rows = [f"{i}.5,{i % 3}.0,{'cat' if i % 2 else 'dog'}" for i in range(12)]
    rows[3] = f"3.5,1.0,{cell}" if where == "label" else f"3.5,{cell},cat"
    path = tmp_path / "na.csv"
    path.write_text("a,b,label\n" + "\n".join(rows) + "\n")
    said = f"label {cell!r} is a missing value; give every row a label" if where == "label" else \
        f"missing value ({cell!r}) in feature 'b'; fill or drop rows with missing values"
    with pytest.raises(SpecError, match=rf"na\.csv line 5: {re.escape(said)}$"):
        load_tabular(path)


def test_a_label_none_is_a_class(tmp_path: Path) -> None:
    rows = [f"{i}.5,{i % 3}.0,{'none' if i % 2 else 'defect'}" for i in range(12)]
    (tmp_path / "n.csv").write_text("a,b,label\n" + "\n".join(rows) + "\n")
    assert load_tabular(tmp_path / "n.csv").class_names == ("defect", "none")
