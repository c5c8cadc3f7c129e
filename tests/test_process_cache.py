"""The per-process cache that lets a worker's later trials skip loading the data again."""

from __future__ import annotations

import os
from pathlib import Path

from tuner._process_cache import cached, path_stamp


def test_cached_makes_once_per_key_and_keeps_the_latest(tmp_path: Path) -> None:
    calls: list[str] = []

    def make(name: str) -> object:
        calls.append(name)
        return object()

    first = cached(("test-cache", "a"), lambda: make("a"), size=2)
    assert cached(("test-cache", "a"), lambda: make("a"), size=2) is first
    cached(("test-cache", "b"), lambda: make("b"), size=2)
    cached(("test-cache", "c"), lambda: make("c"), size=2)  # "a" is now the oldest beyond 2: dropped
    assert cached(("test-cache", "a"), lambda: make("a"), size=2) is not first
    assert calls == ["a", "b", "c", "a"]


def test_path_stamp_changes_when_a_file_or_a_folder_changes(tmp_path: Path) -> None:
    f = tmp_path / "data.npz"
    f.write_bytes(b"one")
    before = path_stamp(f)
    f.write_bytes(b"two!")  # another size
    assert path_stamp(f) != before
    os.utime(f, ns=(1, 1))
    touched = path_stamp(f)
    os.utime(f, ns=(2, 2))  # same size, another mtime
    assert path_stamp(f) != touched

    folder = tmp_path / "idx"
    folder.mkdir()
    (folder / "train-images-idx3-ubyte").write_bytes(b"x")
    stamp = path_stamp(folder)
    (folder / "t10k-images-idx3-ubyte").write_bytes(b"y")
    assert path_stamp(folder) != stamp and len(path_stamp(folder)) == 2


def test_a_named_data_set_has_an_empty_stamp() -> None:
    assert path_stamp("digits") == ()
