"""Digits loader and the shared splitting: stratified, disjoint, seeded, standardised on train only."""

from __future__ import annotations

import numpy as np
import pytest

from tuner.data import Splits, check_split, load_dataset, load_digits, make_splits, stratified_order
from tuner.data.digits import _raw_digits
from tuner.exceptions import SpecError


def test_digits_shapes_and_description() -> None:
    s = load_digits()
    assert (len(s.train), len(s.val), len(s.test)) == (1258, 270, 269)
    assert s.n_features == 64 and s.n_classes == 10 and s.input_shape == (1, 8, 8)
    assert s.class_names == tuple(str(i) for i in range(10))
    assert s.train.X.dtype == np.float32 and s.train.y.dtype == np.int64 and s.train.X.shape == (1258, 64)
    X, y = s.val  # a Part unpacks
    assert X.shape == (270, 64) and y.shape == (270,)
    assert s.describe()["sizes"] == {"train": 1258, "val": 270, "test": 269}
    assert s.mean.shape == s.std.shape == (64,)


def test_fast_read_equals_sklearn() -> None:
    from sklearn.datasets import load_digits as sk_load_digits

    X, y = _raw_digits()
    bunch = sk_load_digits()
    np.testing.assert_array_equal(X, bunch.data.astype(np.float32))
    np.testing.assert_array_equal(y, bunch.target)


def _indexed(n_per_class: tuple[int, ...], **kw) -> Splits:
    """Splits of samples whose only feature is their index (no standardisation), to track identity."""
    y = np.concatenate([np.full(n, c) for c, n in enumerate(n_per_class)])
    X = np.arange(len(y), dtype=np.float32)[:, None]
    return make_splits(X, y, name="idx", class_names=[str(c) for c in range(len(n_per_class))],
                       standardize=False, **kw)


def _ids(s: Splits) -> list[set[int]]:
    return [set(p.X[:, 0].astype(int).tolist()) for p in (s.train, s.val, s.test)]


def test_splits_are_disjoint_and_cover_everything() -> None:
    s = _indexed((100, 50, 30, 20))
    train, val, test = _ids(s)
    assert not (train & val) and not (train & test) and not (val & test)
    assert train | val | test == set(range(200))
    assert (len(train), len(val), len(test)) == (140, 30, 30)


def test_splits_are_stratified() -> None:
    counts = (100, 50, 30, 20)
    s = _indexed(counts, split=(0.6, 0.2, 0.2))
    for part, fraction in ((s.train, 0.6), (s.val, 0.2), (s.test, 0.2)):
        got = np.bincount(part.y, minlength=4)
        assert np.all(np.abs(got - fraction * np.array(counts)) <= 1), (got, fraction)
    digits = load_digits()
    overall = np.bincount(_raw_digits()[1]) / 1797
    for part in (digits.train, digits.val, digits.test):
        assert np.allclose(np.bincount(part.y) / len(part), overall, atol=0.01)


def test_splits_are_seeded() -> None:
    a, b, c = _indexed((60, 40), split_seed=1), _indexed((60, 40), split_seed=1), _indexed((60, 40), split_seed=2)
    assert _ids(a) == _ids(b)
    assert _ids(a) != _ids(c)
    np.testing.assert_array_equal(load_digits(split_seed=3).test.X, load_digits(split_seed=3).test.X)


def test_standardisation_uses_train_statistics_only() -> None:
    raw = load_digits(standardize=False)
    s = load_digits()
    np.testing.assert_allclose(s.mean, raw.train.X.mean(axis=0), atol=1e-5)
    std = raw.train.X.std(axis=0, dtype=np.float64)
    np.testing.assert_allclose(s.std, np.where(std < 1e-8, 1.0, std), rtol=1e-5)
    np.testing.assert_allclose(s.val.X, (raw.val.X - s.mean) / s.std, atol=1e-5)
    np.testing.assert_allclose(s.test.X, (raw.test.X - s.mean) / s.std, atol=1e-5)
    varying = std > 1e-8
    np.testing.assert_allclose(s.train.X.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(s.train.X[:, varying].std(axis=0), 1, atol=1e-4)
    assert not np.allclose(s.val.X.mean(axis=0), 0, atol=1e-3)  # val was not standardised on itself
    assert np.all(s.std > 0)


def test_max_samples_gives_an_exact_stratified_subsample() -> None:
    s = load_digits(max_samples=500)
    assert len(s.train) + len(s.val) + len(s.test) == 500
    counts = np.bincount(np.concatenate([s.train.y, s.val.y, s.test.y]))
    assert counts.min() >= 48 and counts.max() <= 52


def test_stratified_order_prefixes_are_balanced() -> None:
    y = np.repeat(np.arange(3), [300, 200, 100])
    order = stratified_order(y, np.random.default_rng(0))
    assert sorted(order.tolist()) == list(range(600))
    for cut in (60, 150, 333):
        counts = np.bincount(y[order[:cut]], minlength=3)
        assert np.all(np.abs(counts - cut * np.array([0.5, 1 / 3, 1 / 6])) <= 1)


@pytest.mark.parametrize("split, words", [
    ([0.7, 0.3], "expected a list of 3 fractions"),
    ("0.7,0.15,0.15", "expected a list of 3 fractions"),
    ([0.7, "a", 0.15], "fractions must be numbers"),
    ([0.7, 0.3, 0.0], "between 0 and 1"),
    ([0.5, 0.2, 0.2], "sum to 0.9"),
])
def test_bad_split_is_a_spec_error(split, words: str) -> None:
    with pytest.raises(SpecError) as info:
        check_split(split, source="s.yaml", key="task_args.split")
    assert info.value.path == "task_args.split" and words in str(info.value)
    assert check_split([0.8, 0.1, 0.1]) == (0.8, 0.1, 0.1)


def test_load_dataset_by_name() -> None:
    s = load_dataset("digits", split=[0.5, 0.25, 0.25], split_seed=1, max_samples=200)
    assert s.name == "digits" and (len(s.train), len(s.val), len(s.test)) == (100, 50, 50)
    with pytest.raises(SpecError, match="unknown data set 'iris'"):
        load_dataset("iris")
