"""Regression data: the bundled diabetes set and .csv/.npz tables with a numeric target, split at
random and standardised (features and target) with the training part's statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tuner.data import (check_dataset, load_bundled, load_dataset, load_digits, load_regression_dataset,
                        make_regression_splits)
from tuner.exceptions import SpecError


def _target(part, s) -> np.ndarray:  # a part's targets back in their own units
    return part.y.astype(np.float64) * s.y_std + s.y_mean


def test_diabetes_is_split_at_random_and_standardised() -> None:
    s = load_regression_dataset("diabetes")
    assert s.name == "diabetes" and s.task_type == "regression"
    assert (s.n_features, s.n_classes, s.class_names, s.input_shape) == (10, 1, (), (10,))
    assert (len(s.train), len(s.val), len(s.test)) == (309, 66, 67)  # round(0.7 * 442), round(0.15 * 442), rest
    assert all(p.y.dtype == np.float32 and p.X.dtype == np.float32 and p.y.shape == (len(p),)
               for p in (s.train, s.val, s.test))
    # features and target standardised with the training part's statistics
    np.testing.assert_allclose(s.train.X.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(s.train.X.std(axis=0), 1, atol=1e-4)
    assert float(s.train.y.mean()) == pytest.approx(0, abs=1e-6)
    assert float(s.train.y.std()) == pytest.approx(1, abs=1e-5)
    assert abs(float(s.val.y.mean())) > 1e-4  # val and test use the training statistics, not their own
    # round trip: every target back in its units, each sample in exactly one part
    raw = load_bundled("diabetes").y
    back = np.concatenate([_target(p, s) for p in (s.train, s.val, s.test)])
    np.testing.assert_allclose(np.sort(back), np.sort(raw), rtol=1e-6)
    assert s.y_mean == pytest.approx(float(np.mean(_target(s.train, s))))
    assert s.y_std == pytest.approx(float(np.std(_target(s.train, s))))


def test_seeded_subsample_and_split() -> None:
    a = load_regression_dataset("diabetes", max_samples=100, split_seed=3)
    assert (len(a.train), len(a.val), len(a.test)) == (70, 15, 15)
    b = load_regression_dataset("diabetes", max_samples=100, split_seed=3)
    c = load_regression_dataset("diabetes", max_samples=100, split_seed=4)
    np.testing.assert_array_equal(a.test.y, b.test.y)
    np.testing.assert_array_equal(a.train.X, b.train.X)
    assert not np.array_equal(a.test.y, c.test.y)
    other = load_regression_dataset("diabetes", split=[0.5, 0.25, 0.25])
    assert (len(other.train), len(other.val), len(other.test)) == (221, 110, 111)


def test_same_test_part_as_the_sklearn_task() -> None:
    from tuner.tasks.sklearn_task import SklearnTask

    sk = SklearnTask({"estimator": "sklearn.linear_model.Ridge", "dataset": "diabetes", "split_seed": 2}).load_data()
    s = load_regression_dataset("diabetes", split_seed=2)
    np.testing.assert_allclose(_target(s.test, s), sk.y_test, rtol=1e-6)
    np.testing.assert_allclose(s.test.X * s.std + s.mean, sk.X_test, rtol=1e-4, atol=1e-5)


def test_float_targets_need_no_classes() -> None:
    # every target distinct (stratifying by class would make 200 classes, or crash on floats)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = rng.normal(loc=1000.0, scale=50.0, size=200)
    s = make_regression_splits(X, y, name="t", max_samples=150, split_seed=1)
    assert (len(s.train), len(s.val), len(s.test)) == (105, 22, 23)
    assert s.y_mean == pytest.approx(1000, abs=15) and s.y_std == pytest.approx(50, rel=0.2)
    raw = make_regression_splits(X, y, name="t", max_samples=150, split_seed=1, standardize=False,
                                 standardize_target=False)
    assert (raw.y_mean, raw.y_std) == (0.0, 1.0)
    np.testing.assert_allclose(raw.test.y, _target(s.test, s), rtol=1e-6)
    np.testing.assert_allclose(raw.test.X, s.test.X * s.std + s.mean, rtol=1e-5, atol=1e-5)
    constant = make_regression_splits(X, np.full(200, 7.0), name="c")
    assert constant.y_std == 1.0 and np.all(constant.test.y == 0)  # only centred


def test_csv_with_a_target_column_by_name_or_index(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 2))
    price = 100 * X[:, 0] + 5.5
    path = tmp_path / "r.csv"
    path.write_text("\n".join(["a,price,b"] + [f"{a},{p},{b}" for (a, b), p in zip(X, price)]) + "\n")
    s = load_regression_dataset(path, label="price", split_seed=0)
    assert s.name == "r.csv" and s.n_features == 2 and s.task_type == "regression"
    back = np.concatenate([_target(p, s) for p in (s.train, s.val, s.test)])
    np.testing.assert_allclose(np.sort(back), np.sort(price), rtol=1e-5, atol=1e-4)
    by_index = load_regression_dataset(path, label=1, split_seed=0)
    np.testing.assert_array_equal(by_index.test.y, s.test.y)
    last = load_regression_dataset(path, split_seed=0)  # default: the last column (b) is the target
    back = np.concatenate([_target(p, last) for p in (last.train, last.val, last.test)])
    np.testing.assert_allclose(np.sort(back), np.sort(X[:, 1]), rtol=1e-5, atol=1e-5)


def test_npz_regression_table(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "r.npz", X=rng.normal(size=(50, 3)), y=rng.random(50) * 10)
    s = load_regression_dataset(tmp_path / "r.npz", split=[0.6, 0.2, 0.2])
    assert (len(s.train), len(s.val), len(s.test), s.n_features) == (30, 10, 10, 3)


def test_a_text_target_is_a_spec_error(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,label\n1,yes\n2,no\n3,yes\n")
    with pytest.raises(SpecError, match="target 'yes' is not a number"):
        load_regression_dataset(path, source="s.yaml", key="task_args.dataset")


def test_a_missing_target_is_named_as_one(tmp_path: Path) -> None:
    # An empty target cell read as "target '' is not a number".
    (tmp_path / "t.csv").write_text("a,label\n1,0.5\n2,\n3,1.5\n")
    with pytest.raises(SpecError, match="t.csv line 3: empty label; give every row a label"):
        load_regression_dataset(tmp_path / "t.csv")


def test_describe_carries_the_target_statistics() -> None:
    s = load_regression_dataset("diabetes", max_samples=100)
    d = s.describe()
    assert d["task_type"] == "regression" and d["n_classes"] == 1 and d["class_names"] == []
    assert (d["y_mean"], d["y_std"]) == (s.y_mean, s.y_std) and isinstance(d["y_std"], float)
    c = load_digits(max_samples=100).describe()
    assert (c["task_type"], c["y_mean"], c["y_std"]) == ("classification", None, None)


def test_check_dataset_knows_which_built_in_set_is_which(tmp_path: Path) -> None:
    assert check_dataset("diabetes", task_type="regression") == "diabetes"
    assert check_dataset("digits") == "digits"
    with pytest.raises(SpecError) as info:
        check_dataset("diabetes", source="s.yaml", key="task_args.dataset")
    message = str(info.value)
    assert message.startswith("s.yaml: task_args.dataset: diabetes is a regression data set")
    assert "set task_args.task_type: regression" in message and "\n" not in message
    with pytest.raises(SpecError, match="regression data set"):
        load_dataset("diabetes")
    with pytest.raises(SpecError) as info:
        check_dataset("digits", source="s.yaml", key="task_args.dataset", task_type="regression")
    assert "digits is a classification data set" in str(info.value) and "use diabetes" in str(info.value)
    with pytest.raises(SpecError, match="IDX images with classes"):
        check_dataset("data/mnist", base_dir=tmp_path, task_type="regression")
    with pytest.raises(SpecError, match="unknown data set 'iris'.*use diabetes"):
        check_dataset("iris", task_type="regression")
    with pytest.raises(ValueError):
        check_dataset("digits", task_type="ranking")
