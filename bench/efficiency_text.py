"""The sentence-polarity problem of the sample-efficiency benchmark: a bag-of-n-grams network.

The real benchmark data set of ``../shared/datasets/`` is rt-polarity (10,662 movie-review
sentences, positive or negative). Fine-tuning MiniLM on it (``task: text``) takes minutes per
trial on two CPUs, too slow for dozens of trials x 5+ seeds x 4 contenders; a fastText-style
network over TF-IDF-weighted n-grams trains an epoch in well under a second and still has the
knobs whose choice matters on text (n-gram order, width, dropout, optimizer, learning rate,
weight decay, batch size), so it is the problem here. Bag-of-words linear models reach about
76-78 % accuracy on this set (the data set's README); the good configurations here reach about
75 % (validation loss about 0.50) within the 5,000-n-gram vocabulary.

The split is the one ``task: text`` makes (``tuner.data.text.load_text``, seed 0: 7,463 train,
1,599 validation, 1,600 test sentences); the vocabulary is fitted on the training part only.
One step is one epoch; a trial's value is its best epoch's validation loss, as in the digits
MLP and CNN problems. The test part is never read.

The data folder is ``TUNER_BENCH_POLARITY`` when set, else ``../shared/datasets/rt-polarity``
from the project's root.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["check_polarity_data", "polarity_data_dir", "polarity_objective", "polarity_space"]

#: Vocabulary cap (the most frequent n-grams): uni- and bigrams seen twice or more number ~19,000.
#: The optimizer's dense update of the embedding table (vocabulary x hidden) is most of an
#: epoch's time; 5,000 x 32 keeps the widest network under half a second an epoch on one thread.
_MAX_FEATURES = 5_000


def polarity_data_dir() -> Path:
    """Where the sentence-polarity files are (``rt-polarity.pos`` / ``.neg``)."""
    env = os.environ.get("TUNER_BENCH_POLARITY")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "rt-polarity"


def polarity_space(epochs: int) -> dict[str, Any]:
    """The search space: flat, so that Ray Tune's ``param_space`` expresses it 1:1."""
    return {"params": {
        "ngram": {"choice": [1, 2]},
        "hidden": {"int": [4, 32], "log": True},
        "dropout": {"float": [0.0, 0.7]},
        "optimizer": {"choice": ["sgd", "adam"]},
        "lr": {"float": [1.0e-4, 10.0], "log": True},
        "momentum": 0.9,
        "weight_decay": {"float": [1.0e-7, 1.0e-3], "log": True},
        "batch_size": {"choice": [32, 64, 128]},
        "epochs": epochs,
    }}


def check_polarity_data(folder: Path | None = None) -> None:
    """Refuse, in one line with the fix, to run without the data files (in ``folder``, by
    default :func:`polarity_data_dir`)."""
    from tuner.exceptions import TunerError

    folder = polarity_data_dir() if folder is None else folder
    missing = [name for name in ("rt-polarity.pos", "rt-polarity.neg") if not (folder / name).is_file()]
    if missing:
        raise TunerError(f"polarity_bow: {folder / missing[0]} not found; set TUNER_BENCH_POLARITY to the folder "
                         "holding rt-polarity.pos and rt-polarity.neg (../shared/datasets/rt-polarity)")


@lru_cache(maxsize=4)
def _features(ngram: int, data_dir: str) -> tuple[Any, np.ndarray, Any, np.ndarray]:
    """TF-IDF features of the train and validation parts (cached per process: every trial of a
    run, and every run of a worker process, reuses them)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from tuner.data.text import load_text

    check_polarity_data(Path(data_dir))
    splits = load_text(Path(data_dir), source="bench/efficiency_text", key="TUNER_BENCH_POLARITY")
    vectorizer = TfidfVectorizer(ngram_range=(1, ngram), min_df=2, sublinear_tf=True, max_features=_MAX_FEATURES,
                                 dtype=np.float32)
    x_train = vectorizer.fit_transform(splits.train.texts).tocsr()
    x_val = vectorizer.transform(splits.val.texts).tocsr()
    return x_train, splits.train.y, x_val, splits.val.y


def _bags(x: Any, rows: np.ndarray | None = None) -> tuple[Any, Any, Any]:
    """``EmbeddingBag`` inputs (indices, offsets, weights) of the CSR rows ``rows`` (all if None)."""
    import torch

    part = x if rows is None else x[rows]
    return (torch.from_numpy(part.indices.astype(np.int64)), torch.from_numpy(part.indptr[:-1].astype(np.int64)),
            torch.from_numpy(part.data))


def _network(n_features: int, hidden: int, dropout: float) -> Any:
    import torch

    class BagOfNgrams(torch.nn.Module):
        """Sum of TF-IDF-weighted n-gram embeddings, ReLU, dropout, linear head (fastText with a hidden layer)."""

        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.EmbeddingBag(n_features, hidden, mode="sum")
            self.bias = torch.nn.Parameter(torch.zeros(hidden))
            self.drop = torch.nn.Dropout(dropout)
            self.head = torch.nn.Linear(hidden, 2)

        def forward(self, indices: Any, offsets: Any, weights: Any) -> Any:
            h = self.embed(indices, offsets, per_sample_weights=weights) + self.bias
            return self.head(self.drop(torch.relu(h)))

    return BagOfNgrams()


def polarity_objective(params: dict[str, Any], ctx: Any) -> dict[str, float]:
    """``fn(params, ctx)``: train for ``epochs``, reporting validation loss and accuracy each epoch.

    Seeded by ``ctx.seed`` (weights, dropout, batch order), on ``ctx.num_threads`` threads. A
    diverged epoch (a non-finite loss) ends the trial, as the zoo's tasks do: with its best
    finite epoch, or pruned when there is none.
    """
    import torch
    import torch.nn.functional as F

    from tuner.exceptions import TrialPruned

    torch.set_num_threads(max(1, int(getattr(ctx, "num_threads", 1))))
    x_train, y_train, x_val, y_val = _features(int(params["ngram"]), str(polarity_data_dir()))
    torch.manual_seed(int(ctx.seed))
    order_rng = np.random.default_rng(int(ctx.seed))
    model = _network(x_train.shape[1], int(params["hidden"]), float(params["dropout"]))
    lr, wd = float(params["lr"]), float(params["weight_decay"])
    if params["optimizer"] == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=float(params.get("momentum", 0.9)),
                              weight_decay=wd)
    targets = torch.from_numpy(y_train.astype(np.int64))
    val_bags, val_targets = _bags(x_val), torch.from_numpy(y_val.astype(np.int64))
    batch = int(params["batch_size"])
    best: dict[str, float] | None = None
    for epoch in range(1, int(params["epochs"]) + 1):
        model.train()
        perm = order_rng.permutation(len(y_train))
        for start in range(0, len(perm), batch):
            rows = np.sort(perm[start:start + batch])
            opt.zero_grad()
            loss = F.cross_entropy(model(*_bags(x_train, rows)), targets[rows])
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            logits = model(*val_bags)
            val_loss = float(F.cross_entropy(logits, val_targets))
            val_accuracy = float((logits.argmax(1) == val_targets).float().mean())
        ctx.report(epoch, {"val_loss": val_loss, "val_accuracy": val_accuracy})  # may raise TrialPruned
        if not math.isfinite(val_loss):
            if best is None:
                raise TrialPruned(f"training diverged at epoch {epoch}")
            break
        if best is None or val_loss < best["val_loss"]:
            best = {"val_loss": val_loss, "val_accuracy": val_accuracy}
    assert best is not None
    return best
