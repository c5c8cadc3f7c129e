"""The data sets bundled with scikit-learn: what tuner knows of them without reading them."""

from __future__ import annotations

from tuner.data import BUNDLED_DATASETS, BUNDLED_SIZES, load_bundled


def test_the_sizes_validation_checks_splits_with_are_the_data_sets_sizes() -> None:
    assert set(BUNDLED_SIZES) == set(BUNDLED_DATASETS)
    assert {name: len(load_bundled(name).y) for name in BUNDLED_SIZES} == BUNDLED_SIZES
