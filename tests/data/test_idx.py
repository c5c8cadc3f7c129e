"""IDX files (the MNIST family's format) and image data sets: round trips, bad files, folders, splits."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from tuner.data import check_dataset, load_dataset, load_idx, load_images, read_idx, write_idx
from tuner.data.idx import IDX_FILES, IdxError, check_idx_folder, download_idx, find_idx_files
from tuner.exceptions import SpecError


def fake_mnist(folder: Path, *, n_train: int = 120, n_test: int = 40, size: int = 12, n_classes: int = 10,
               gz: bool = True, seed: int = 0) -> Path:
    """Write a small MNIST-like data set in the real IDX format: class k is a bright bar at row k."""
    rng = np.random.default_rng(seed)

    def images(labels: np.ndarray) -> np.ndarray:
        X = rng.integers(0, 40, size=(len(labels), size, size), dtype=np.uint8)
        for i, k in enumerate(labels):
            X[i, k % size, :] = 255
        return X

    y_train = np.arange(n_train, dtype=np.uint8) % n_classes
    y_test = np.arange(n_test, dtype=np.uint8) % n_classes
    suffix = ".gz" if gz else ""
    write_idx(folder / f"train-images-idx3-ubyte{suffix}", images(y_train))
    write_idx(folder / f"train-labels-idx1-ubyte{suffix}", y_train)
    write_idx(folder / f"t10k-images-idx3-ubyte{suffix}", images(y_test))
    write_idx(folder / f"t10k-labels-idx1-ubyte{suffix}", y_test)
    return folder


# ---- the format ---------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_round_trip(tmp_path: Path, gz: bool, dtype: type) -> None:
    array = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    if dtype == np.uint8:
        array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / ("a.idx" + (".gz" if gz else "")), array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == (2, 3, 4)
    np.testing.assert_array_equal(back, array)


def test_the_header_is_the_official_one(tmp_path: Path) -> None:
    images = write_idx(tmp_path / "i", np.zeros((3, 28, 28), dtype=np.uint8)).read_bytes()
    labels = write_idx(tmp_path / "l", np.zeros(3, dtype=np.uint8)).read_bytes()
    assert struct.unpack(">IIII", images[:16]) == (2051, 3, 28, 28)  # big-endian magic, then the sizes
    assert struct.unpack(">II", labels[:8]) == (2049, 3)
    assert len(images) == 16 + 3 * 28 * 28 and len(labels) == 8 + 3
    gz = write_idx(tmp_path / "l.gz", np.zeros(3, dtype=np.uint8)).read_bytes()
    assert gzip.decompress(gz) == labels


def test_reads_a_hand_written_file(tmp_path: Path) -> None:
    raw = struct.pack(">IIII", 2051, 2, 2, 3) + bytes(range(12))
    (tmp_path / "x").write_bytes(raw)
    np.testing.assert_array_equal(read_idx(tmp_path / "x"), np.arange(12, dtype=np.uint8).reshape(2, 2, 3))


@pytest.mark.parametrize("content, words", [
    (struct.pack(">II", 0x12345678, 3) + b"abc", "wrong magic number 305419896"),
    (struct.pack(">II", 2049, 10) + b"abc", "truncated: shape (10,) needs 10 bytes of data, found 3"),
    (struct.pack(">II", 2049, 2) + b"abc", "has trailing bytes"),
    (struct.pack(">IIII", 2051, 2, 28, 28) + bytes(100), "truncated"),
    (struct.pack(">III", 2051, 2, 28), "truncated header"),
    (b"\x00\x00", "too short"),
])
def test_bad_files_are_clear_errors(tmp_path: Path, content: bytes, words: str) -> None:
    (tmp_path / "bad").write_bytes(content)
    with pytest.raises(IdxError, match=words.replace("(", r"\(").replace(")", r"\)")):
        read_idx(tmp_path / "bad")


def test_bad_gzip_is_a_clear_error(tmp_path: Path) -> None:
    good = gzip.compress(struct.pack(">II", 2049, 3) + b"abc")
    (tmp_path / "cut.gz").write_bytes(good[:-6])
    with pytest.raises(IdxError, match="not a readable gzip file"):
        read_idx(tmp_path / "cut.gz")
    (tmp_path / "plain.gz").write_bytes(b"not gzip at all")
    with pytest.raises(IdxError, match="not a readable gzip file"):
        read_idx(tmp_path / "plain.gz")


# ---- folders ------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_folder_official_test_split_and_validation_from_train(tmp_path: Path, gz: bool) -> None:
    folder = fake_mnist(tmp_path / "mnist", gz=gz)
    data = load_idx(folder, split=[0.6, 0.2, 0.2])
    assert data.input_shape == (1, 12, 12) and data.n_features == 144 and data.n_classes == 10
    assert len(data.test) == 40  # the t10k files, all of them
    assert len(data.val) == 30 and len(data.train) == 90  # val = 0.2 / (0.6 + 0.2) of the 120 training images
    assert np.bincount(data.val.y, minlength=10).tolist() == [3] * 10  # stratified
    assert abs(float(data.train.X.mean())) < 1e-5  # standardised with training statistics (per pixel)
    raw_test = read_idx(folder / f"t10k-labels-idx1-ubyte{'.gz' if gz else ''}")
    np.testing.assert_array_equal(data.test.y, raw_test)  # test order kept


def test_folder_split_is_seeded_and_max_samples_caps_everything(tmp_path: Path) -> None:
    folder = fake_mnist(tmp_path / "mnist")
    a, b = load_idx(folder, split_seed=3), load_idx(folder, split_seed=3)
    c = load_idx(folder, split_seed=4)
    np.testing.assert_array_equal(a.val.X, b.val.X)
    assert not np.array_equal(a.val.X, c.val.X)
    small = load_idx(folder, max_samples=100, split=[0.7, 0.1, 0.2])
    assert len(small.train) + len(small.val) + len(small.test) == 100
    assert len(small.test) == 20 and len(small.val) == 10


def test_folder_class_subset_relabels_in_the_given_order(tmp_path: Path) -> None:
    folder = fake_mnist(tmp_path / "mnist")
    data = load_images(folder, classes=[7, 2, 5])
    assert data.class_names == ("7", "2", "5") and data.n_classes == 3
    assert set(data.train.y) == {0, 1, 2} and len(data.test) == 12
    with pytest.raises(SpecError) as info:
        load_images(folder, classes=[3, 12], source="s.yaml", key="task_args.dataset")
    assert info.value.path == "task_args.classes" and "class 12 is not in the data set" in str(info.value)


def test_fashion_folders_get_class_names(tmp_path: Path) -> None:
    data = load_idx(fake_mnist(tmp_path / "fashion-mnist"))
    assert data.class_names[0] == "T-shirt/top" and data.class_names[9] == "Ankle boot"


def test_channel_normalisation(tmp_path: Path) -> None:
    data = load_images(fake_mnist(tmp_path / "mnist"), normalize="channel")
    assert len(set(data.mean.tolist())) == 1 and len(set(data.std.tolist())) == 1  # one value per channel
    assert abs(float(data.train.X.mean())) < 1e-4 and abs(float(data.train.X.std()) - 1) < 1e-3
    none = load_images(fake_mnist(tmp_path / "mnist"), normalize="none")
    assert none.train.X.max() == 255.0


def test_check_dataset_accepts_an_idx_folder_next_to_the_spec(tmp_path: Path) -> None:
    fake_mnist(tmp_path / "data" / "mnist")
    got = check_dataset("data/mnist", base_dir=tmp_path, source="s.yaml", key="task_args.dataset")
    assert got == str((tmp_path / "data" / "mnist").resolve())
    data = load_dataset(got, max_samples=60)  # the MLP's loader reads IDX folders too (flat, per-pixel)
    assert data.n_features == 144 and len(data.train) + len(data.val) + len(data.test) == 60


def test_a_missing_folder_says_what_to_download_and_where(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        check_dataset("data/fashion-mnist", base_dir=tmp_path, source="studies/f.yaml", key="task_args.dataset")
    message = str(info.value)
    assert message.startswith("studies/f.yaml: task_args.dataset: data folder 'data/fashion-mnist' not found")
    assert "train-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert "fashion-mnist.s3-website" in message and str(tmp_path / "data" / "fashion-mnist") in message
    assert "\n" not in message


def test_a_folder_lacking_files_names_them(tmp_path: Path) -> None:
    folder = fake_mnist(tmp_path / "mnist")
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    assert set(find_idx_files(folder)) == {"train_images", "train_labels", "test_images"}
    with pytest.raises(SpecError, match="lacks t10k-labels-idx1-ubyte"):
        check_idx_folder(folder, source="s.yaml", key="task_args.dataset")


def test_corrupt_files_in_a_folder_are_spec_errors_at_load(tmp_path: Path) -> None:
    folder = fake_mnist(tmp_path / "mnist", gz=False)
    (folder / "train-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, 500) + bytes(10))
    with pytest.raises(SpecError) as info:
        load_idx(folder, source="s.yaml", key="task_args.dataset")
    assert info.value.path == "task_args.dataset" and "truncated" in str(info.value)
    folder2 = fake_mnist(tmp_path / "mnist2", gz=False)
    write_idx(folder2 / "train-labels-idx1-ubyte", np.zeros(7, dtype=np.uint8))
    with pytest.raises(SpecError, match="120 images but 7 labels"):
        load_idx(folder2)


def test_unknown_names_still_say_unknown(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="unknown data set 'mnist'.*folder of MNIST-family IDX files"):
        check_dataset("mnist", base_dir=tmp_path)


def test_download_from_a_base_url(tmp_path: Path) -> None:
    source = fake_mnist(tmp_path / "mirror")
    got = download_idx(source.as_uri() + "/", tmp_path / "dl")
    assert [p.name for p in got] == [f"{name}.gz" for name in IDX_FILES.values()]
    np.testing.assert_array_equal(read_idx(got[0]), read_idx(source / "train-images-idx3-ubyte.gz"))
    (source / "t10k-images-idx3-ubyte.gz").write_bytes(b"broken")
    with pytest.raises(IdxError):
        download_idx(source.as_uri(), tmp_path / "dl2")
    assert not (tmp_path / "dl2" / "t10k-images-idx3-ubyte.gz").exists()  # an invalid download is not kept


def test_a_failed_download_names_the_url_and_leaves_no_empty_folder(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # It said "error: <urlopen error [Errno -2] Name or service not known>" and left an empty
    # folder, which then read as a half-done download ("lacks train-images-idx3-ubyte").
    from tuner.data.idx import _main

    target = tmp_path / "data" / "fashion-mnist"
    with pytest.raises(OSError, match=r"^cannot download http://127\.0\.0\.1:1/train-images-idx3-ubyte\.gz: .*; "
                                      r"check the network, or fetch the files train-images-idx3-ubyte\.gz, .* into "
                                      rf"{target} by hand$"):
        download_idx("http://127.0.0.1:1/", target, timeout=5)
    assert not (tmp_path / "data").exists()
    (tmp_path / "mine").mkdir()  # a folder the user had stays, empty or not
    assert _main(["download", "http://127.0.0.1:1", str(tmp_path / "mine")]) == 1
    assert (tmp_path / "mine").is_dir()
    err = capsys.readouterr().err
    assert err.startswith("error: cannot download http://127.0.0.1:1/train-images-idx3-ubyte.gz") and err.count("\n") == 1


# ---- .npz images -----------------------------------------------------------------------------------


def test_npz_images_hw_and_chw_with_an_official_test_part(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "hw.npz", X=rng.random((60, 6, 5)), y=np.arange(60) % 3)
    hw = load_images(tmp_path / "hw.npz")
    assert hw.input_shape == (1, 6, 5) and hw.n_features == 30 and hw.class_names == ("0", "1", "2")
    np.savez(tmp_path / "chw.npz", X=rng.random((60, 3, 4, 4)), y=np.array(["cat", "dog"] * 30),
             X_test=rng.random((10, 3, 4, 4)), y_test=np.array(["dog"] * 10))
    chw = load_images(tmp_path / "chw.npz", normalize="channel")
    assert chw.input_shape == (3, 4, 4) and chw.class_names == ("cat", "dog")
    assert len(chw.test) == 10 and set(chw.test.y) == {1}
    assert len(set(chw.mean.tolist())) == 3  # one mean per colour channel
    np.savez(tmp_path / "flat.npz", X=rng.random((60, 5)), y=np.arange(60) % 3)
    with pytest.raises(SpecError, match=r"must hold images \(N, H, W\) or \(N, C, H, W\)"):
        load_images(tmp_path / "flat.npz")


def test_a_missing_label_in_an_npz_of_images_is_a_spec_error(tmp_path: Path) -> None:
    X = np.zeros((6, 4, 4))
    np.savez(tmp_path / "a.npz", X=X, y=np.array([0, 1, np.nan, 0, 1, 0]))
    with pytest.raises(SpecError, match=r"a.npz: y\[2\] is a missing label \('nan'\)"):
        load_images(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", X=X, y=np.arange(6) % 2, X_test=X[:2], y_test=np.array(["1", " "]))
    with pytest.raises(SpecError, match=r"b.npz: y_test\[1\] is a missing label \(' '\)"):
        load_images(tmp_path / "b.npz")


def test_channels_last_images_are_refused_with_the_transpose(tmp_path: Path) -> None:
    # (N, 8, 8, 3) was read as 8 channels of 8 x 3 pixels and trained on without a word.
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "hwc.npz", X=rng.random((20, 8, 8, 3)), y=np.arange(20) % 2)
    with pytest.raises(SpecError) as info:
        load_images(tmp_path / "hwc.npz", source="s.yaml", key="task_args.dataset")
    assert str(info.value) == (f"s.yaml: task_args.dataset: {tmp_path / 'hwc.npz'}: X of shape (20, 8, 8, 3) looks "
                               "channels-last (N, H, W, C), but the layout is (N, C, H, W); save "
                               "np.transpose(X, (0, 3, 1, 2)) instead")
    np.savez(tmp_path / "chw.npz", X=rng.random((20, 3, 8, 8)), y=np.arange(20) % 2,
             X_test=rng.random((4, 3, 8, 8)), y_test=np.arange(4) % 2)
    assert load_images(tmp_path / "chw.npz").input_shape == (3, 8, 8)  # (N, C, H, W) as before
    np.savez(tmp_path / "small.npz", X=rng.random((20, 3, 4, 4)), y=np.arange(20) % 2)  # C = H = W: as documented
    assert load_images(tmp_path / "small.npz").input_shape == (3, 4, 4)


def test_digits_class_subset_and_same_split_as_the_mlp() -> None:
    from tuner.data import load_digits

    images = load_images("digits", normalize="pixel")
    flat = load_digits()
    np.testing.assert_allclose(images.val.X, flat.val.X, atol=1e-5)  # same split, same standardisation
    subset = load_images("digits", classes=[5, 6, 7, 8, 9], split=[0.05, 0.35, 0.6])
    assert subset.class_names == ("5", "6", "7", "8", "9") and 40 <= len(subset.train) <= 50


def test_download_command(tmp_path: Path) -> None:
    import subprocess
    import sys

    source = fake_mnist(tmp_path / "mirror")
    run = subprocess.run([sys.executable, "-m", "tuner.data.idx", "download", source.as_uri(), str(tmp_path / "d")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stderr == "", run.stderr
    assert len(run.stdout.splitlines()) == 4 and set(find_idx_files(tmp_path / "d")) == set(IDX_FILES)
    usage = subprocess.run([sys.executable, "-m", "tuner.data.idx"], capture_output=True, text=True, timeout=120)
    assert usage.returncode == 2 and "usage: python -m tuner.data.idx download" in usage.stderr
