"""``task: text``: the offline encoder, the classifier model, training through a fake context,
task arguments, and one real study through Ray and SQLite.

Kept fast on 2 CPU cores: one torch thread, tiny data sets, short sentences, mostly frozen layers.
"""

from __future__ import annotations

import os

# Before anything imports transformers or huggingface_hub: the hub is never to be reached.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import json  # noqa: E402
import random  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from tests.conftest import ROOT  # noqa: E402
from tuner.exceptions import SpaceError, SpecError, TrialPruned  # noqa: E402
from tuner.tasks import get_task, task_names  # noqa: E402
from tuner.tasks import _encoder as enc  # noqa: E402
from tuner.tasks.text import TEXT_DEFAULTS, TextTask  # noqa: E402

RT_POLARITY = ROOT.parent / "shared" / "datasets" / "rt-polarity"
FAST = {"max_length": 16, "batch_size": 16, "precision": "fp32", "early_stopping_patience": 0}


def _easy_folder(root: Path, n: int = 100, seed: int = 0) -> Path:
    """good.txt / bad.txt: sentences that differ only by the word 'good' or 'bad'."""
    rng = random.Random(seed)
    fillers = ["the", "film", "plot", "cast", "story", "was", "really", "quite", "ending", "music", "acting", "so"]
    root.mkdir(parents=True, exist_ok=True)
    for word in ("good", "bad"):
        lines = []
        for _ in range(n):
            words = rng.sample(fillers, 5)
            words.insert(rng.randrange(6), word)
            lines.append(" ".join(words))
        (root / f"{word}.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def easy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _easy_folder(tmp_path_factory.mktemp("easy") / "data")


# ---- the bundled encoder, offline ------------------------------------------------------------------


def test_bundled_model_loads_offline_and_embeds_sentences(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    enc._ENCODERS.clear()
    tokenizer, encoder = enc.load_pretrained("all-MiniLM-L6-v2")
    assert enc.model_path("all-MiniLM-L6-v2").is_dir()
    assert type(encoder).__name__ == "BertModel" and encoder.config.hidden_size == 384
    assert encoder.pooler is None
    embeddings, layers = enc.encoder_parts(encoder)
    assert embeddings is encoder.embeddings and len(layers) == 6

    X = torch.from_numpy(enc.tokenize(tokenizer, ["a great movie", "an excellent film", "stocks fell sharply"], 16))
    with torch.inference_mode():
        hidden = encoder(input_ids=X[:, 0], attention_mask=X[:, 1]).last_hidden_state
    v = torch.nn.functional.normalize(enc.pool(hidden, X[:, 1], "mean"), dim=1)
    assert float(v[0] @ v[1]) > 0.6 > float(v[0] @ v[2]) + 0.2  # a real sentence embedding, not random weights


def test_load_pretrained_gives_independent_copies() -> None:
    _, a = enc.load_pretrained("all-MiniLM-L6-v2")
    _, b = enc.load_pretrained("all-MiniLM-L6-v2")
    with torch.no_grad():
        a.embeddings.word_embeddings.weight.zero_()
    assert float(b.embeddings.word_embeddings.weight.detach().abs().sum()) > 0


def test_tokenize_stacks_ids_and_mask_right_padded() -> None:
    tokenizer, _ = enc.pretrained("all-MiniLM-L6-v2")
    X = enc.tokenize(tokenizer, ["short", "a much longer sentence than the first one by far"], 8)
    assert X.dtype == np.int64 and X.shape == (2, 2, 8)
    assert X[0, 1].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]  # [CLS] short [SEP], then padding
    assert X[1, 1].tolist() == [1] * 8  # truncated at max_length
    assert X[0, 0, 0] == tokenizer.cls_token_id and X[0, 0, 3] == tokenizer.pad_token_id


# ---- the model -------------------------------------------------------------------------------------


def _batch(texts: list[str], max_length: int = 32) -> torch.Tensor:
    tokenizer, _ = enc.pretrained("all-MiniLM-L6-v2")
    return torch.from_numpy(enc.tokenize(tokenizer, texts, max_length))


@pytest.mark.parametrize("pooling", ["mean", "cls", "max"])
def test_pooling_variants_give_one_logit_row_per_sentence(pooling: str) -> None:
    _, encoder = enc.load_pretrained("all-MiniLM-L6-v2")
    model = enc.TextClassifier(encoder, 3, pooling=pooling, dropout=0.2).eval()
    X = _batch(["one", "two words", "three words here"])
    padded = torch.cat([X, torch.zeros(3, 2, 10, dtype=torch.long)], dim=2)  # extra padding is trimmed
    with torch.inference_mode():
        out, out_padded = model(X), model(padded)
    assert out.shape == (3, 3)
    torch.testing.assert_close(out, out_padded, rtol=1e-4, atol=1e-5)


def test_pool_ignores_padding() -> None:
    hidden = torch.tensor([[[1.0, 5.0], [3.0, -1.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert enc.pool(hidden, mask, "mean").tolist() == [[2.0, 2.0]]
    assert enc.pool(hidden, mask, "max").tolist() == [[3.0, 5.0]]
    assert enc.pool(hidden, mask, "cls").tolist() == [[1.0, 5.0]]


def test_freeze_layers_freezes_embeddings_and_bottom_layers() -> None:
    _, encoder = enc.load_pretrained("all-MiniLM-L6-v2")
    model = enc.TextClassifier(encoder, 2, freeze_layers=4)
    trainable = {".".join(n.split(".")[:4]) if n.startswith("encoder.") else n
                 for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"encoder.encoder.layer.4", "encoder.encoder.layer.5", "head.weight", "head.bias"}
    model.train()
    assert not encoder.embeddings.training and not encoder.encoder.layer[3].training  # no dropout when frozen
    assert encoder.encoder.layer[4].training and model.head.training

    head_only = enc.TextClassifier(enc.load_pretrained("all-MiniLM-L6-v2")[1], 2, freeze_layers=6)
    assert [n for n, p in head_only.named_parameters() if p.requires_grad] == ["head.weight", "head.bias"]
    state = head_only.state_dict()
    assert sorted(head_only.trainable_state(state)) == ["head.bias", "head.weight"]
    layers_only = enc.TextClassifier(enc.load_pretrained("all-MiniLM-L6-v2")[1], 2, freeze_layers=0)
    assert {n.split(".")[1] for n, p in layers_only.named_parameters() if not p.requires_grad} == {"embeddings"}
    everything = enc.TextClassifier(enc.load_pretrained("all-MiniLM-L6-v2")[1], 2, freeze_layers=0,
                                    freeze_embeddings=False)
    assert all(p.requires_grad for p in everything.parameters()) and not everything.frozen
    # Every layer frozen but the embeddings asked to train: they train (it froze the whole encoder, unsaid).
    embeddings_and_head = enc.TextClassifier(enc.load_pretrained("all-MiniLM-L6-v2")[1], 2, freeze_layers=6,
                                             freeze_embeddings=False)
    trainable = {n.split(".")[1] for n, p in embeddings_and_head.named_parameters() if p.requires_grad}
    assert "embeddings" in trainable and "encoder" not in trainable


@pytest.mark.parametrize("kwargs, key", [
    ({"freeze_layers": 7}, "freeze_layers"),
    ({"freeze_layers": -1}, "freeze_layers"),
    ({"freeze_layers": 1.5}, "freeze_layers"),
    ({"pooling": "attention"}, "pooling"),
    ({"dropout": 1.0}, "dropout"),
    ({"freeze_embeddings": "no"}, "freeze_embeddings"),
])
def test_bad_model_params(kwargs: dict[str, Any], key: str) -> None:
    _, encoder = enc.pretrained("all-MiniLM-L6-v2")
    with pytest.raises(SpaceError) as info:
        enc.TextClassifier(encoder, 2, **kwargs)
    assert info.value.path == key


def test_length_bucketed_batches_cover_every_sample_once_with_similar_lengths() -> None:
    lengths = torch.tensor([random.Random(i).randint(5, 60) for i in range(1000)])
    batches = enc.length_bucketed_batches(lengths, chunk_batches=10)(1000, 32, torch.Generator().manual_seed(0))
    flat = torch.cat(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    spread = np.mean([int(lengths[b].max() - lengths[b].min()) for b in batches if len(b) == 32])
    assert spread < 10  # random batches of 32 would span about 50 tokens
    again = enc.length_bucketed_batches(lengths, chunk_batches=10)(1000, 32, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(batches, again))


# ---- training through the task ------------------------------------------------------------------------


def test_training_learns_the_easy_set_and_checkpoints_the_trained_part(easy: Path, make_ctx) -> None:
    task = TextTask({"dataset": str(easy)})
    ctx = make_ctx()
    params = {**FAST, "lr": 2e-3, "epochs": 3, "freeze_layers": 5, "pooling": "mean", "dropout": 0.0,
              "warmup_frac": 0.0}
    final = task.run(params, ctx)

    assert [s for s, _ in ctx.reports] == [1, 2, 3]
    assert set(ctx.reports[0][1]) == {"train_loss", "val_loss", "val_accuracy", "val_f1", "val_precision",
                                      "val_recall", "lr", "epoch_time_s"}
    assert final["val_accuracy"] >= 0.85 and final["test_accuracy"] >= 0.8  # chance is 0.5
    assert ctx.series("train_loss")[-1] < ctx.series("train_loss")[0]
    assert set(final) <= set(task.metric_names())
    assert np.array(ctx.attrs["confusion_matrix"]).sum() == 30
    assert sorted(ctx.attrs["per_class"]) == ["bad", "good"]

    ckpt = torch.load(ctx.trial_dir / "best.pt", weights_only=False)
    assert ckpt["task"] == "text" and ckpt["model"] == "all-MiniLM-L6-v2" and ckpt["max_length"] == 16
    assert ckpt["params"]["freeze_layers"] == 5 and ckpt["params"]["optimizer"] == "adamw"  # defaults filled
    saved = set(ckpt["state_dict"])
    assert "head.weight" in saved and any(k.startswith("encoder.encoder.layer.5.") for k in saved)
    assert not any(k.startswith(("encoder.embeddings.", "encoder.encoder.layer.4.")) for k in saved)

    # The frozen weights are still the pretrained ones; the trained ones moved.
    _, pristine = enc.pretrained("all-MiniLM-L6-v2")
    model, tokenizer, _ = enc.load_text_classifier(ctx.trial_dir / "best.pt")
    torch.testing.assert_close(model.encoder.encoder.layer[4].output.dense.weight,
                               pristine.encoder.layer[4].output.dense.weight, rtol=0, atol=0)
    assert not torch.equal(model.encoder.encoder.layer[5].output.dense.weight,
                           pristine.encoder.layer[5].output.dense.weight)
    probs = enc.predict(model, tokenizer, ["the film was really good", "the plot was so bad"], max_length=16)
    assert probs.shape == (2, 2) and probs[0].argmax() == 1 and probs[1].argmax() == 0  # classes: bad, good


def test_pruning_propagates_and_seeds_repeat(easy: Path, make_ctx) -> None:
    task = TextTask({"dataset": str(easy), "max_samples": 60})
    params = {**FAST, "lr": 1e-3, "epochs": 2, "freeze_layers": 6}
    with pytest.raises(TrialPruned):
        task.run(params, make_ctx(prune_at=1))
    a, b = make_ctx(seed=3), make_ctx(seed=3)
    task.run(params, a)
    task.run(params, b)
    assert a.series("val_loss") == pytest.approx(b.series("val_loss"), rel=1e-5)


def test_a_rerun_goes_on_from_the_saved_trained_part_and_ends_as_the_uninterrupted_trial(
        easy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The resume point holds what training changes (the unfrozen layers, the head) and the
    length-bucketed batch order's generator; the frozen encoder comes from the bundled model."""
    from tests.tasks.conftest import Killed, RunContext, rerun_context
    from tuner.tasks import _resume
    from tuner.tasks._resume import RESUME_FILE

    monkeypatch.setattr(_resume, "TIME_SHARE", 1e9)  # a point after every epoch, however short

    task = TextTask({"dataset": str(easy), "max_samples": 80})
    params = {**FAST, "lr": 2e-3, "epochs": 3, "freeze_layers": 5, "dropout": 0.1}
    whole = RunContext(tmp_path / "whole", seed=3)
    expected = task.run(dict(params), whole)
    with pytest.raises(Killed):
        task.run(dict(params), RunContext(tmp_path / "stopped", seed=3, kill_at=3))
    saved = torch.load(tmp_path / "stopped" / RESUME_FILE, weights_only=False)
    assert saved["epoch"] == 2 and "head.weight" in saved["model"]
    assert not any(k.startswith(("encoder.embeddings.", "encoder.encoder.layer.4.")) for k in saved["model"])
    rerun = rerun_context(tmp_path / "rerun", tmp_path / "stopped", seed=11)
    got = task.run(dict(params), rerun)
    assert rerun.attrs["resumed_at_epoch"] == 2 and rerun.warnings == []
    assert [s for s, _ in rerun.reports] == [1, 2, 3]
    assert rerun.series("val_loss") == pytest.approx(whole.series("val_loss"), rel=1e-5)
    assert got["test_loss"] == pytest.approx(expected["test_loss"], rel=1e-5)


def test_csv_next_to_the_spec_and_null_params_take_text_defaults(tmp_path: Path, make_ctx) -> None:
    rows = ["review,stars"] + [f'"{t}",{"5" if "good" in t else "1"}'
                               for t in (_easy_folder(tmp_path / "src", n=20) / "good.txt").read_text().split("\n")
                               + (tmp_path / "src" / "bad.txt").read_text().split("\n") if t]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "r.csv").write_text("\n".join(rows) + "\n")
    spec = tmp_path / "study.yaml"
    spec.write_text("task: text\n")
    task = TextTask({"dataset": "data/r.csv", "text": "review", "label": "stars"}, source=str(spec))
    assert task.args["dataset"] == str((tmp_path / "data" / "r.csv").resolve())
    merged = task.params_with_defaults({"lr": None, "grad_clip": None, "epochs": 1})
    assert merged["lr"] == TEXT_DEFAULTS["lr"] and merged["grad_clip"] is None and merged["epochs"] == 1
    ctx = make_ctx()
    task.run({**FAST, "epochs": 1, "freeze_layers": 6, "lr": 1e-3}, ctx)
    assert sorted(ctx.attrs["per_class"]) == ["1", "5"]


def test_a_split_that_leaves_a_part_empty_is_refused_when_the_sentences_are_read(tmp_path: Path) -> None:
    task = TextTask({"dataset": str(_easy_folder(tmp_path / "tiny", n=2))}, source="s.yaml")  # 4 sentences
    with pytest.raises(SpecError) as info:
        task.load_texts()
    assert info.value.path == "task_args.split" and "the test part of tiny/ is empty (4 samples" in str(info.value)


# ---- task arguments ---------------------------------------------------------------------------------


def test_registered_and_constructible_without_arguments() -> None:
    assert "text" in task_names() and get_task("text") is TextTask
    task = TextTask()  # what the spec validator does to list metric names
    assert "val_accuracy" in task.metric_names() and "test_accuracy" in task.metric_names()
    assert TextTask.default_metric == "val_accuracy" and TextTask.default_direction == "maximize"


def test_looking_up_and_checking_the_task_does_not_import_torch(easy: Path) -> None:
    code = ("import sys; from tuner.tasks import get_task; "
            f"t = get_task('text')({{'dataset': {str(easy)!r}}}); t.metric_names(); "
            "bad = [m for m in ('torch', 'transformers', 'ray') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.parametrize("args, key, words", [
    ({}, "task_args.dataset", "missing"),
    ({"dataset": "nowhere/at/all"}, "task_args.dataset", "'nowhere/at/all' not found"),
    ({"datset": "x"}, "task_args.datset", "did you mean 'dataset'?"),
    ({"model": "bert-base-uncased"}, "task_args.model", "unknown model 'bert-base-uncased' (models are never"),
    ({"model": "no/such/folder"}, "task_args.model", "model folder 'no/such/folder' not found"),
    ({"encoding": "klingon"}, "task_args.encoding", "unknown text encoding 'klingon'"),
    ({"text": 1.5}, "task_args.text", "expected a column name or index"),
    ({"label": None}, "task_args.label", "expected a column name or index"),
    ({"max_samples": 5}, "task_args.max_samples", "expected an integer >= 10"),
    ({"split": [0.5, 0.5]}, "task_args.split", "expected a list of 3 fractions"),
    ({"split_seed": "x"}, "task_args.split_seed", "expected an integer"),
])
def test_bad_task_args_name_the_key(easy: Path, args: dict[str, Any], key: str, words: str) -> None:
    full = {"dataset": str(easy), **args} if args and "dataset" not in args else args
    with pytest.raises(SpecError) as info:
        TextTask(full, source="studies/x.yaml")
    assert info.value.path == key, str(info.value)
    assert words in str(info.value)
    assert str(info.value).startswith(f"studies/x.yaml: {key}: ")


def test_model_folder_needs_a_config(tmp_path: Path, easy: Path) -> None:
    (tmp_path / "enc").mkdir()
    with pytest.raises(SpecError, match="has no config.json"):
        TextTask({"dataset": str(easy), "model": str(tmp_path / "enc")})
    enc.model_path("all-MiniLM-L6-v2")  # a local HF folder is accepted: the bundled one is such a folder
    task = TextTask({"dataset": str(easy), "model": str(enc.model_path("all-MiniLM-L6-v2"))})
    assert Path(task.args["model"]).is_dir()


@pytest.mark.parametrize("params, key", [({"max_length": 4}, "max_length"), ({"max_length": 1000}, "max_length"),
                                         ({"pooling": "sum"}, "pooling"), ({"freeze_layers": 9}, "freeze_layers")])
def test_bad_params_are_space_errors(easy: Path, make_ctx, params: dict[str, Any], key: str) -> None:
    with pytest.raises(SpaceError) as info:
        TextTask({"dataset": str(easy)}).run({**FAST, "epochs": 1, **params}, make_ctx())
    assert info.value.path == key


def _model_folder(folder: Path, files: dict[str, str], *, bundled: tuple[str, ...] = ()) -> Path:
    """A model folder with ``files`` (name: text) and copies of the bundled model's ``bundled`` files."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in bundled:
        (folder / name).write_bytes((enc.model_path("all-MiniLM-L6-v2") / name).read_bytes())
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def _text_spec(tmp_path: Path, **task_args: Any) -> dict[str, Any]:
    """text_finetune's study, small: 200 sentences of rt-polarity."""
    return {"name": "t", "task": "text", "search_space": str(ROOT / "search_spaces" / "text.yaml"), "n_trials": 1,
            "task_args": {"dataset": str(RT_POLARITY), "max_samples": 200, **task_args}}


@pytest.mark.parametrize("files, words", [
    ({"config.json": "{}"}, "config.json names no model_type (transformers cannot tell which model it is)"),
    ({"config.json": "{not json"}, "config.json is not valid JSON"),
    ({"config.json": "[1, 2]"}, "config.json holds list, not a JSON object"),
    ({"config.json": '{"model_type": "bert"}'}, "holds no tokenizer (tokenizer.json, or a vocabulary: vocab.txt"),
    ({"config.json": '{"model_type": "bert"}', "tokenizer.json": "{}"}, "tokenizer.json is not a tokenizer file"),
])
def test_a_model_folder_transformers_cannot_load_is_refused_when_the_spec_is_validated(
        tmp_path: Path, files: dict[str, str], words: str) -> None:
    """Every trial failed with transformers' own ``ValueError: Couldn't instantiate the backend tokenizer``
    (or ``Unrecognized model``), naming no key of the spec; validate said ok."""
    from tuner.spec import spec_from_mapping

    model = _model_folder(tmp_path / "model", files)
    with pytest.raises(SpecError) as info:
        spec_from_mapping(_text_spec(tmp_path, model=str(model)), source="t.yaml")
    assert info.value.path == "task_args.model" and words in str(info.value), info.value


def test_a_model_folder_is_checked_without_torch_transformers_or_its_weights(tmp_path: Path) -> None:
    """Its config and tokenizer files are opened (tokenizers, 0.1 s), not the model (seconds of imports)."""
    model = _model_folder(tmp_path / "model", {}, bundled=("config.json", "tokenizer.json", "tokenizer_config.json"))
    vocab_only = _model_folder(tmp_path / "vocab", {}, bundled=("config.json", "vocab.txt"))
    code = ("import sys; from tuner.tasks import get_task\n"
            f"for m in ({str(model)!r}, {str(vocab_only)!r}):\n"
            f"    get_task('text')({{'dataset': {str(RT_POLARITY)!r}, 'model': m}}).check_data()\n"
            "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_a_data_set_every_trial_would_refuse_is_refused_when_the_spec_is_validated(tmp_path: Path) -> None:
    from tuner.spec import spec_from_mapping

    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "good.txt").write_text("a fine film\na good plot\n" * 10)
    with pytest.raises(SpecError) as info:
        spec_from_mapping({**_text_spec(tmp_path), "task_args": {"dataset": str(tmp_path / "one")}}, source="t.yaml")
    assert info.value.path == "task_args.dataset" and "has a single class 'good'" in str(info.value)


@pytest.mark.parametrize("param, values, words", [
    ("freeze_layers", 9, "value 9 is refused by task text; expected an integer from 0 (fine-tune every layer) "
                         "to 6 (train the head only)"),
    ("freeze_layers", {"int": [0, 8]}, "high 8 is refused by task text; expected an integer from 0"),
    ("pooling", {"choice": ["mean", "sum"]}, "choice 'sum' is refused by task text; expected one of mean, cls, max"),
    ("dropout", {"float": [0.0, 1.0]}, "high 1.0 is refused by task text; expected a number in [0, 1)"),
    ("freeze_embeddings", {"choice": [True, "no"]}, "choice 'no' is refused by task text; expected true or false"),
])
def test_model_params_the_trial_would_refuse_are_refused_when_the_spec_is_validated(
        tmp_path: Path, param: str, values: Any, words: str) -> None:
    """check_params checked max_length and the training loop's params only: these failed each trial that drew them."""
    from tuner.exceptions import SpaceError
    from tuner.spec import spec_from_mapping

    spec = {**_text_spec(tmp_path), "search_space": {"include": [str(ROOT / "search_spaces" / "text.yaml")],
                                                      "params": {param: values}}}
    with pytest.raises(SpaceError) as info:
        spec_from_mapping(spec, source="t.yaml")
    assert str(info.value).startswith(f"t.yaml: search_space: params.{param}: ") and words in str(info.value), info.value


def test_freeze_layers_and_max_length_are_checked_against_the_model_folders_config(tmp_path: Path) -> None:
    """The bounds are the model's (config.json, read without torch), not MiniLM's."""
    from tuner.exceptions import SpaceError
    from tuner.spec import spec_from_mapping

    config = json.loads((enc.model_path("all-MiniLM-L6-v2") / "config.json").read_text())
    model = _model_folder(tmp_path / "small", {"config.json": json.dumps({**config, "num_hidden_layers": 2,
                                                                          "max_position_embeddings": 128})},
                          bundled=("tokenizer.json",))
    task = TextTask({"dataset": str(RT_POLARITY), "model": str(model)})
    task.check_params({"freeze_layers": 2, "max_length": 128})
    with pytest.raises(SpaceError, match="freeze_layers: invalid value 3; expected an integer from 0 .* to 2"):
        task.check_params({"freeze_layers": 3})
    with pytest.raises(SpaceError, match="max_length: invalid value 256; the model takes at most 128 tokens"):
        task.check_params({"max_length": 256})
    spec = {**_text_spec(tmp_path, model=str(model)), "search_space": {"params": {"freeze_layers": {"int": [0, 4]}}}}
    with pytest.raises(SpaceError, match="params.freeze_layers: high 4 is refused by task text"):
        spec_from_mapping(spec, source="t.yaml")


# ---- the shipped study, for real ----------------------------------------------------------------------


def test_text_finetune_study_validates_and_runs_two_trials(ray_cluster: None, tmp_path: Path) -> None:
    import tuner
    from tuner.engine import _attrs

    if not RT_POLARITY.is_dir():
        pytest.fail(f"the sentence-polarity data set is missing: expected {RT_POLARITY}")
    spec_path = ROOT / "studies" / "text_finetune.yaml"
    spec = tuner.validate(spec_path)
    assert spec.task == "text" and Path(spec.task_args["dataset"]).name == "rt-polarity"
    study = tuner.run(spec_path, storage=f"sqlite:///{tmp_path / 'text.db'}", overrides={
        "n_trials": 2,
        "concurrency": 1,  # one worker loads the encoder, not two: the suite is CPU-bound on 2 CPUs
        "pruner": "none",
        "task_args.max_samples": 200,
        "artifacts_dir": str(tmp_path / "runs"),
        "search_space": {"include": ["text.yaml"],
                         "params": {"epochs": 1, "freeze_layers": 5, "max_length": 16, "precision": "fp32"}},
    })
    trials = study.trials
    assert len(trials) == 2 and all(t.state.name == "COMPLETE" for t in trials), \
        [(t.state.name, t.system_attrs.get(_attrs.ERROR)) for t in trials]
    for t in trials:
        curve = t.system_attrs[_attrs.CURVE]
        assert [point["step"] for point in curve] == [1] and "val_accuracy" in curve[0]
        metrics = t.system_attrs[_attrs.METRICS]
        assert 0 <= metrics["test_accuracy"] <= 1 and metrics["val_accuracy"] == t.value
    assert len(list((tmp_path / "runs").rglob("best.pt"))) == 2


def test_another_local_encoder_folder(tmp_path: Path, easy: Path, make_ctx) -> None:
    """task_args.model: a local Hugging Face folder of another architecture (a tiny random DistilBERT)."""
    from transformers import DistilBertConfig, DistilBertModel

    folder = tmp_path / "tiny-distilbert"
    torch.manual_seed(0)
    DistilBertModel(DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64)).save_pretrained(folder)
    enc.pretrained("all-MiniLM-L6-v2")[0].save_pretrained(folder)
    spec = tmp_path / "s.yaml"
    spec.write_text("task: text\n")
    task = TextTask({"dataset": str(easy), "model": "tiny-distilbert", "max_samples": 60}, source=str(spec))
    assert task.args["model"] == str(folder.resolve())
    ctx = make_ctx()
    final = task.run({**FAST, "epochs": 1, "freeze_layers": 1, "pooling": "max", "lr": 1e-3}, ctx)
    assert final["n_params"] < 100_000 and len(ctx.reports) == 1  # embeddings and layer 0 frozen
    ckpt = torch.load(ctx.trial_dir / "best.pt", weights_only=False)
    assert ckpt["model"] == str(folder.resolve())
    assert any(".layer.1." in k for k in ckpt["state_dict"]) and not any(".layer.0." in k for k in ckpt["state_dict"])
    model, _, _ = enc.load_text_classifier(ctx.trial_dir / "best.pt")
    assert type(model.encoder).__name__ == "DistilBertModel"
