"""Text data sets: the CSV, folder-per-class and pos/neg forms, encodings, errors and the split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tuner.data import TextSplits, load_text, read_texts
from tuner.data.text import check_encoding, check_text_dataset, decode_bytes, split_indices
from tuner.exceptions import SpecError
from tests.conftest import ROOT

RT_POLARITY = ROOT.parent / "shared" / "datasets" / "rt-polarity"


def _all(s: TextSplits) -> tuple[list[str], np.ndarray]:
    texts = [*s.train.texts, *s.val.texts, *s.test.texts]
    return texts, np.concatenate([s.train.y, s.val.y, s.test.y])


# ---- the three forms ------------------------------------------------------------------------------


def test_csv_with_quotes_commas_and_newlines(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_text('id,text,label\n1,"great, really great",pos\n2,"bad\nand long",neg\n3,fine,pos\n'
                    '4,  awful  ,neg\n\n5,,neg\n')
    texts, y, names = read_texts(path)
    assert names == ["neg", "pos"]
    assert texts == ["great, really great", "bad\nand long", "fine", "awful"]  # stripped; empty text skipped
    assert y.tolist() == [1, 0, 1, 0] and y.dtype == np.int64


def test_csv_columns_by_name_or_index_and_tsv(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("sentence,stars\nok,3\nmeh,10\nbad,2\ngood,10.0\n")
    texts, y, names = read_texts(path, text="sentence", label="stars")
    assert names == ["2", "3", "10"]  # numeric labels in numeric order; 10 and 10.0 are one class
    assert y.tolist() == [1, 2, 0, 2]
    assert read_texts(path, text=0, label=-1)[1].tolist() == y.tolist()
    tsv = tmp_path / "t.tsv"
    tsv.write_text("label\ttext\nb\tone, two\na\tthree\n")
    assert read_texts(tsv)[:2][0] == ["one, two", "three"]


def test_folder_with_one_file_per_class(tmp_path: Path) -> None:
    (tmp_path / "sport.txt").write_bytes(b"goal scored\r\n\r\n  a late winner \r\nextra time\n")
    (tmp_path / "politics.txt").write_text("an election\nthe vote\n")
    (tmp_path / "README.txt").write_text("not a class\n")
    (tmp_path / ".hidden.txt").write_text("not a class either\n")
    texts, y, names = read_texts(tmp_path)
    assert names == ["politics", "sport"]
    assert texts == ["an election", "the vote", "goal scored", "a late winner", "extra time"]
    assert y.tolist() == [0, 0, 1, 1, 1]


def test_pos_neg_pair_in_latin1_utf8_and_cp1252(tmp_path: Path) -> None:
    (tmp_path / "rt.pos").write_bytes("un film trés réussi\nbeautiful\n".encode("latin-1"))
    (tmp_path / "rt.neg").write_bytes("\ufeffclichés everywhere\nboring\n".encode("utf-8"))
    (tmp_path / "more.neg").write_bytes("it\u2019s dull\n".encode("cp1252"))  # 0x92: a cp1252 quote
    texts, y, names = read_texts(tmp_path)
    assert names == ["neg", "pos"]  # pos is class 1
    assert texts == ["it\u2019s dull", "clichés everywhere", "boring", "un film trés réussi", "beautiful"]
    assert y.tolist() == [0, 0, 0, 1, 1]
    with pytest.raises(SpecError) as info:  # an explicit encoding is obeyed
        read_texts(tmp_path, encoding="utf-8", source="s.yaml", key="task_args.dataset")
    assert "is not valid utf-8" in str(info.value) and "task_args.encoding" in str(info.value)
    assert read_texts(tmp_path, encoding="latin-1")[0][3] == "un film trés réussi"


def test_decode_bytes_auto() -> None:
    assert decode_bytes("naïve".encode("utf-8")) == "naïve"
    assert decode_bytes("naïve".encode("latin-1")) == "naïve"
    assert decode_bytes(b"\x81\xe9") == "\x81é"  # undefined in cp1252: Latin-1 takes any byte
    assert decode_bytes("x".encode("utf-16"), "utf-16") == "x"


def test_real_rt_polarity_files() -> None:
    if not RT_POLARITY.is_dir():
        pytest.fail(f"the sentence-polarity data set is missing: expected {RT_POLARITY}")
    s = load_text(RT_POLARITY)
    texts, y = _all(s)
    assert len(texts) == 10662 and np.bincount(y).tolist() == [5331, 5331]
    assert s.class_names == ("neg", "pos") and s.name == "rt-polarity/"
    assert (len(s.train), len(s.val), len(s.test)) == (7463, 1599, 1600)
    assert not any("\ufffd" in t or "Ã" in t for t in texts)  # decoded, not mojibake
    assert any("é" in t for t in texts)


# ---- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("files, words", [
    ({"a.pos": "x\n"}, "has *.pos files but no *.neg file"),
    ({"notes.md": "x\n"}, "holds no <class>.txt or *.pos/*.neg files (found notes.md)"),
    ({"only.txt": "x\ny\n"}, "has a single class 'only'"),
    ({"a.txt": "\n\n", "b.txt": ""}, "holds no examples"),
])
def test_bad_folders(tmp_path: Path, files: dict[str, str], words: str) -> None:
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    with pytest.raises(SpecError) as info:
        read_texts(tmp_path, source="s.yaml", key="task_args.dataset")
    assert info.value.path == "task_args.dataset" and words in str(info.value)


@pytest.mark.parametrize("content, kwargs, key, words", [
    ("text,label\nx,a\n", {"text": "review"}, "task_args.text", "no column named 'review'"),
    ("text,label\nx,a\n", {"label": 5}, "task_args.label", "column 5 out of range for 2 columns"),
    ("text,label\nx,a\n", {"label": "text"}, "task_args.label", "the label column is the text column"),
    ("text,label\nx,a\ny\n", {}, "task_args.dataset", "line 3: 1 fields, expected 2"),
    ("text,label\nx,a\ny,\n", {}, "task_args.dataset", "line 3: empty label"),
    ("", {}, "task_args.dataset", "is empty"),
])
def test_bad_csv(tmp_path: Path, content: str, kwargs: dict, key: str, words: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(content)
    with pytest.raises(SpecError) as info:
        read_texts(path, source="s.yaml", key="task_args.dataset", **kwargs)
    assert info.value.path == key and words in str(info.value)


def test_check_text_dataset_resolves_against_the_spec_then_the_cwd(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "spec_dir" / "data").mkdir(parents=True)
    (tmp_path / "cwd" / "other").mkdir(parents=True)
    (tmp_path / "cwd" / "t.csv").write_text("text,label\n")
    monkeypatch.chdir(tmp_path / "cwd")
    spec_dir = tmp_path / "spec_dir"
    assert check_text_dataset("data", base_dir=spec_dir) == str((spec_dir / "data").resolve())
    assert check_text_dataset("other", base_dir=spec_dir) == str((tmp_path / "cwd" / "other").resolve())
    assert check_text_dataset("t.csv", base_dir=spec_dir).endswith("t.csv")
    with pytest.raises(SpecError) as info:
        check_text_dataset("../shared/nowhere", base_dir=spec_dir, source="studies/x.yaml", key="task_args.dataset")
    message = str(info.value)
    assert message.startswith("studies/x.yaml: task_args.dataset: '../shared/nowhere' not found (looked at ")
    assert "\n" not in message
    (tmp_path / "cwd" / "t.json").write_text("{}")
    with pytest.raises(SpecError, match="unsupported file type '.json'"):
        check_text_dataset("t.json")


def test_check_encoding() -> None:
    assert check_encoding("auto") == "auto"
    assert check_encoding("Latin-1") == "Latin-1" and check_encoding("utf8") == "utf8"
    for bad in ("klingon", "base64", 3, ""):
        with pytest.raises(SpecError, match="unknown text encoding"):
            check_encoding(bad)


# ---- the split ---------------------------------------------------------------------------------------


def _balanced_folder(tmp_path: Path, counts: dict[str, int]) -> Path:
    for name, n in counts.items():
        (tmp_path / f"{name}.txt").write_text("".join(f"{name} sentence {i}\n" for i in range(n)))
    return tmp_path


def test_split_is_stratified_disjoint_complete_and_seeded(tmp_path: Path) -> None:
    folder = _balanced_folder(tmp_path, {"a": 100, "b": 60, "c": 40})
    s = load_text(folder, split_seed=3)
    assert (len(s.train), len(s.val), len(s.test)) == (140, 30, 30)
    assert [np.bincount(p.y, minlength=3).tolist() for p in (s.train, s.val, s.test)] == \
        [[70, 42, 28], [15, 9, 6], [15, 9, 6]]
    texts, y = _all(s)
    assert sorted(texts) == sorted(read_texts(folder)[0])  # every sentence once
    assert all(t.startswith(s.class_names[label]) for t, label in zip(texts, y))  # labels travel with texts
    again = load_text(folder, split_seed=3)
    assert again.val.texts == s.val.texts and again.test.texts == s.test.texts
    assert load_text(folder, split_seed=4).val.texts != s.val.texts


def test_max_samples_is_a_stratified_subsample(tmp_path: Path) -> None:
    folder = _balanced_folder(tmp_path, {"a": 300, "b": 100})
    s = load_text(folder, max_samples=80, split=[0.5, 0.25, 0.25])
    texts, y = _all(s)
    assert len(texts) == 80 and np.bincount(y).tolist() == [60, 20]
    assert len(set(texts)) == 80


def test_split_indices_match_make_splits() -> None:
    from tuner.data import make_splits

    y = np.arange(97) % 4
    X = np.arange(97, dtype=np.float32)[:, None]
    s = make_splits(X, y, name="x", class_names=list("abcd"), split_seed=5, max_samples=60, standardize=False)
    idx = split_indices(y, split_seed=5, max_samples=60)
    assert [p.X[:, 0].astype(int).tolist() for p in (s.train, s.val, s.test)] == [i.tolist() for i in idx]


def test_a_csv_with_a_byte_order_mark_reads_its_first_column_name_whatever_the_encoding(tmp_path: Path) -> None:
    # Excel's "CSV UTF-8": with encoding utf-8 the first column was '\ufefftext', "no column named 'text'".


    rows = "".join(f"film number {i},{i % 2}\n" for i in range(40))
    (tmp_path / "bom.csv").write_bytes(("\ufefftext,label\n" + rows).encode("utf-8"))
    for encoding in ("utf-8", "auto"):
        data = load_text(str(tmp_path / "bom.csv"), text="text", label="label", encoding=encoding)
        assert len(data.train) + len(data.val) + len(data.test) == 40
