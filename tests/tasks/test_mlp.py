"""The task registry, the Task base contract, MLPTask and build_mlp."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from tuner.exceptions import SpaceError, SpecError
from tuner.tasks import Task, TorchClassifierTask, get_task, register_task, task_names
from tuner.tasks._models import build_mlp
from tuner.tasks.mlp import MLPTask

QUICKSTART = {"n_layers": 2, "width": [128, 64], "activation": "relu", "optimizer": "adam", "lr": 3e-3,
              "batch_size": 64, "epochs": 20}


# ---- registry ----------------------------------------------------------------------------------


def test_registry_resolves_mlp_lazily() -> None:
    assert "mlp" in task_names()
    assert get_task("mlp") is MLPTask
    assert MLPTask.name == "mlp"


def test_unknown_task_lists_known_tasks() -> None:
    with pytest.raises(SpecError) as info:
        get_task("mpl", source="studies/x.yaml", path="task")
    message = str(info.value)
    assert message.startswith("studies/x.yaml: task: unknown task 'mpl'")
    assert "did you mean 'mlp'" in message and "known tasks: " in message and "mlp" in message


def test_register_task_by_class_and_by_string() -> None:
    class Echo(Task):
        name = "echo"

        def run(self, params: dict[str, Any], ctx: Any) -> dict[str, float]:
            return {"value": float(params["x"])}

        def metric_names(self) -> list[str]:
            return ["value"]

    register_task("echo_test", Echo)
    register_task("mlp_alias_test", "tuner.tasks.mlp:MLPTask")
    assert get_task("echo_test")().run({"x": 2}, None) == {"value": 2.0}
    assert get_task("mlp_alias_test") is MLPTask
    assert {"echo_test", "mlp_alias_test"} <= set(task_names())
    with pytest.raises(ValueError):
        register_task("bad", "no_colon_here")
    with pytest.raises(TypeError):
        register_task("bad", dict)


def test_looking_up_a_task_does_not_import_torch() -> None:
    code = ("import sys; from tuner.tasks import get_task; t = get_task('mlp')(); names = t.metric_names(); "
            "assert 'val_accuracy' in names; bad = [m for m in ('torch', 'sklearn', 'ray') if m in sys.modules]; "
            "assert not bad, bad")
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


# ---- task contract (every built-in torch task passes the same battery) ---------------------------


@pytest.mark.parametrize("name", ["mlp"])
def test_task_contract(name: str, make_ctx) -> None:
    cls = get_task(name)
    assert issubclass(cls, Task)
    task = cls()  # constructible without arguments, cheaply
    assert cls.default_metric in task.metric_names()
    assert cls.default_direction in ("maximize", "minimize")
    task = cls({"max_samples": 300})
    ctx = make_ctx()
    final = task.run({"epochs": 2, "lr": 0.01}, ctx)
    assert set(final) <= set(task.metric_names())
    assert all(set(m) <= set(task.metric_names()) for _, m in ctx.reports)
    assert [s for s, _ in ctx.reports] == [1, 2]
    ckpt = torch.load(ctx.trial_dir / "best.pt", weights_only=False)
    assert ckpt["task"] == name and ckpt["task_args"]["max_samples"] == 300


# ---- MLPTask ------------------------------------------------------------------------------------


def test_quickstart_mlp_reaches_95_percent_on_digits(make_ctx) -> None:
    ctx = make_ctx()
    final = MLPTask().run(QUICKSTART, ctx)
    assert final["val_accuracy"] >= 0.95
    assert final["test_accuracy"] >= 0.93
    assert len(ctx.reports) <= 20


def test_mlp_trains_on_a_csv_next_to_the_spec(tmp_path: Path, make_ctx) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    lines = ["a,b,label,c,d"] + [f"{r[0]},{r[1]},{lab},{r[2]},{r[3]}" for r, lab in zip(X, y)]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "t.csv").write_text("\n".join(lines))
    spec = tmp_path / "study.yaml"
    spec.write_text("task: mlp\n")
    task = MLPTask({"dataset": "data/t.csv"}, source=str(spec))
    assert task.args["dataset"] == str((tmp_path / "data" / "t.csv").resolve())
    ctx = make_ctx()
    final = task.run({"epochs": 10, "lr": 0.01, "width": 16}, ctx)
    assert final["val_accuracy"] > 0.85
    assert sorted(ctx.attrs["per_class"]) == ["no", "yes"]


@pytest.mark.parametrize("args, key, words", [
    ({"datset": "digits"}, "task_args.datset", "did you mean 'dataset'? allowed keys: dataset, label, max_samples"),
    ({"dataset": "mnist"}, "task_args.dataset", "unknown data set 'mnist'"),
    ({"dataset": "missing/file.csv"}, "task_args.dataset", "file 'missing/file.csv' not found"),
    ({"split": [0.8, 0.3, 0.1]}, "task_args.split", "sum to"),
    ({"split": [0.8, 0.2]}, "task_args.split", "expected a list of 3 fractions"),
    ({"split": [1.0, 0.0, 0.0]}, "task_args.split", "between 0 and 1"),
    ({"split_seed": "zero"}, "task_args.split_seed", "expected an integer"),
    ({"max_samples": 5}, "task_args.max_samples", "expected an integer >= 10"),
    ({"label": 1.5}, "task_args.label", "column name or index"),
])
def test_bad_task_args_raise_spec_errors_at_the_key(args: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(SpecError) as info:
        MLPTask(args, source="studies/x.yaml")
    assert info.value.source == "studies/x.yaml"
    assert info.value.path == key
    assert words in str(info.value)
    assert str(info.value).startswith(f"studies/x.yaml: {key}: ")


def _small_csv(path: Path, n: int) -> Path:
    """``n`` rows of 4 features and a 0/1 label (also a number, for regression), half of each class."""
    rng = np.random.default_rng(0)
    rows = [",".join(f"{v:.3f}" for v in rng.normal(i % 2 * 1.5, 1, 4)) + f",{i % 2}" for i in range(n)]
    path.write_text("a,b,c,d,label\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("task_type", ["classification", "regression"])
@pytest.mark.parametrize("n, split, part", [(10, [0.9, 0.05, 0.05], "val"), (4, [0.7, 0.15, 0.15], "test")])
def test_a_split_that_leaves_a_part_empty_fails_the_trial_at_task_args_split(
        tmp_path: Path, make_ctx, task_type: str, n: int, split: list[float], part: str) -> None:
    # Scored on no samples, the part read as val_accuracy 0 in a COMPLETE trial (or failed on a NaN).
    path = _small_csv(tmp_path / "small.csv", n)
    task = MLPTask({"dataset": str(path), "split": split, "task_type": task_type}, source="s.yaml")
    with pytest.raises(SpecError) as info:
        task.run({"epochs": 1, "width": 8, "n_layers": 1}, make_ctx())
    assert info.value.path == "task_args.split"
    assert str(info.value) == (f"s.yaml: task_args.split: the {part} part of small.csv is empty ({n} samples split "
                               f"[{', '.join(f'{f:g}' for f in split)}]); give the {part} part a larger fraction "
                               f"or use more samples")


@pytest.mark.parametrize("name, args", [
    ("mlp", {}), ("mlp", {"dataset": "diabetes", "task_type": "regression"}), ("cnn", {}), ("resnet", {}),
    ("sklearn", {"dataset": "iris", "estimator": "sklearn.linear_model.LogisticRegression"}),
])
def test_a_built_in_data_set_split_with_an_empty_part_is_refused_at_validation(name: str, args: dict[str, Any]
                                                                                ) -> None:
    # 10 samples split [0.8, 0.15, 0.05] leave the test part none: known without reading the data.
    with pytest.raises(SpecError) as info:
        get_task(name)({**args, "max_samples": 10, "split": [0.8, 0.15, 0.05]}, source="s.yaml")
    assert info.value.path == "task_args.split"
    assert "the test part of" in str(info.value) and "is empty (10 samples split [0.8, 0.15, 0.05])" in str(info.value)
    get_task(name)({**args, "max_samples": 20, "split": [0.8, 0.15, 0.05]}, source="s.yaml")  # 16, 3, 1: fine


def test_task_args_must_be_a_mapping() -> None:
    with pytest.raises(SpecError) as info:
        MLPTask(["digits"], source="s.yaml")  # type: ignore[arg-type]
    assert info.value.path == "task_args" and "expected a mapping" in str(info.value)


def test_task_args_defaults_are_filled() -> None:
    task = MLPTask({"max_samples": 100})
    assert task.args == {"dataset": "digits", "task_type": "classification", "split": [0.7, 0.15, 0.15],
                         "split_seed": 0, "max_samples": 100, "label": None}
    assert isinstance(task, TorchClassifierTask)


# ---- build_mlp ------------------------------------------------------------------------------------


def _linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def test_build_mlp_layers_from_params() -> None:
    model = build_mlp(64, 10, {"n_layers": 3, "width": [32, 16, 8], "activation": "tanh", "batch_norm": True,
                               "dropout": 0.3})
    assert [(m.in_features, m.out_features) for m in _linears(model)] == [(64, 32), (32, 16), (16, 8), (8, 10)]
    kinds = [type(m) for m in model]
    assert kinds[:4] == [nn.Linear, nn.BatchNorm1d, nn.Tanh, nn.Dropout]
    assert kinds.count(nn.Dropout) == 3 and model[3].p == 0.3
    assert model(torch.zeros(5, 64)).shape == (5, 10)


def test_build_mlp_width_int_list_and_zero_layers() -> None:
    assert [m.out_features for m in _linears(build_mlp(4, 3, {"n_layers": 2, "width": 7}))] == [7, 7, 3]
    assert [m.out_features for m in _linears(build_mlp(4, 3, {"width": [5, 6]}))] == [5, 6, 3]
    assert [m.out_features for m in _linears(build_mlp(4, 3, {"n_layers": 1, "width": [5, 6, 9]}))] == [5, 3]
    assert len(_linears(build_mlp(4, 3, {"n_layers": 0}))) == 1
    assert not any(isinstance(m, (nn.Dropout, nn.BatchNorm1d)) for m in build_mlp(4, 3, {}))
    for act, cls in (("relu", nn.ReLU), ("gelu", nn.GELU), ("silu", nn.SiLU)):
        assert isinstance(build_mlp(4, 3, {"activation": act})[1], cls)


@pytest.mark.parametrize("init", ["he", "xavier"])
def test_build_mlp_init(init: str) -> None:
    torch.manual_seed(0)
    model = build_mlp(400, 10, {"n_layers": 1, "width": 300, "init": init})
    first = _linears(model)[0]
    assert torch.count_nonzero(first.bias) == 0
    expected_std = (2 / 400) ** 0.5 if init == "he" else (2 / (400 + 300)) ** 0.5
    assert float(first.weight.detach().std()) == pytest.approx(expected_std, rel=0.05)
    default = build_mlp(400, 10, {"n_layers": 1, "width": 300})
    assert float(_linears(default)[0].weight.detach().std()) == pytest.approx((1 / 400 / 3) ** 0.5, rel=0.05)


@pytest.mark.parametrize("params, key", [
    ({"activation": "swish"}, "activation"),
    ({"init": "orthogonal"}, "init"),
    ({"dropout": 1.0}, "dropout"),
    ({"batch_norm": "yes"}, "batch_norm"),
    ({"n_layers": -1}, "n_layers"),
    ({"width": 0}, "width"),
])
def test_build_mlp_rejects_bad_params(params: dict[str, Any], key: str) -> None:
    with pytest.raises(SpaceError) as info:
        build_mlp(4, 3, params)
    assert info.value.path == key


# ---- the data, read once when the spec is validated ------------------------------------------------

ONE_CLASS = "a,b,label\n" + "".join(f"{i},{i % 3},0\n" for i in range(11))
A_WORD = "a,b,label\n1,2,0\n3,x,1\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(8))


@pytest.mark.parametrize("csv, words", [
    (ONE_CLASS, "has a single class; a classification data set needs at least 2 labels"),
    (A_WORD, "line 3: feature 'x' is not a number; encode categorical features as numbers"),
])
def test_a_csv_every_trial_would_refuse_is_refused_when_the_spec_is_validated(tmp_path: Path, csv: str,
                                                                             words: str) -> None:
    """Found only inside each trial before: validate said ok, and max_failures + 1 trials failed the same way."""
    from tuner.spec import load_spec

    (tmp_path / "x.csv").write_text(csv)
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\ntask: mlp\ntask_args: {dataset: x.csv}\nn_trials: 1\nsearch_space:\n"
                    "  params: {n_layers: 1, width: [8], lr: 0.01, batch_size: 32, epochs: 1}\n")
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    assert info.value.path == "task_args.dataset" and words in str(info.value), info.value
    (tmp_path / "x.csv").write_text("a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(11)))
    assert load_spec(spec).task == "mlp"
