"""Each built-in task names the search-space parameters it reads (``Task.param_names``), and the
spec refuses any other: a parameter no task reads is tuned for nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

import tuner
from tuner.exceptions import SpaceError
from tuner.tasks import get_task

ROOT = Path(__file__).resolve().parents[2]


class _Reads(dict):
    """A params dict that remembers every name looked up in it."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return super().__contains__(key)

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("a task iterated the params: its reads cannot be told apart")  # noqa: EM101

    def items(self) -> Any:  # TrainConfig picks its names out of items(): those are TRAINING_PARAMS
        return super().items()


FAST = {"epochs": 1, "batch_size": 64, "optimizer": "adam", "lr": 1e-2}
CASES = {
    "mlp": ({"max_samples": 200}, {**FAST, "n_layers": 1, "width": 8}),
    "cnn": ({"max_samples": 200}, {**FAST, "n_conv": 1, "channels": 4, "head_width": 8, "augment": "light"}),
    "resnet": ({"max_samples": 200}, {**FAST, "n_stages": 1, "width": 4, "blocks": 1, "augment": "light"}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_real_trial_reads_only_the_names_the_task_declares(name: str, make_ctx) -> None:
    # The declared list is what the spec checks against; a name the task reads but does not
    # declare would be refused in every spec that sets it, so a trial's real reads must be inside it.
    task_args, params = CASES[name]
    task = get_task(name)(task_args)
    tracked = _Reads(params)
    task.run(tracked, make_ctx())
    known = task.param_names()
    assert known is not None and tracked.read, tracked.read
    assert tracked.read <= known, sorted(tracked.read - known)


def _spec(task: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"name": "p", "task": task, "task_args": {"max_samples": 200}, "search_space": {"params": params}}


@pytest.mark.parametrize("param,hint", [
    ("droput", "did you mean 'dropout'?"),
    ("learning_rate", "did you mean 'lr'?"),
    ("lr2", "did you mean 'lr'?"),
    ("colour", "task mlp reads activation, batch_norm"),
])
def test_a_parameter_the_task_never_reads_is_refused(param: str, hint: str) -> None:
    with pytest.raises(SpaceError) as info:
        tuner.validate(_spec("mlp", {"lr": {"float": [1e-4, 1e-1], "log": True}, param: {"float": [0.0, 0.5]}}))
    message = str(info.value)
    assert f"params.{param}" in message and f"task mlp has no parameter {param!r}" in message and hint in message


def test_the_users_own_names_and_the_sklearn_estimators_pass() -> None:
    assert tuner.validate(_spec("mlp", {"_note": "kept for the user", "dropout": {"float": [0.0, 0.5]}}))
    # scikit-learn's task reads what its estimator's constructor takes (tests/tasks/test_sklearn.py).
    sk = {"name": "s", "task": "sklearn", "task_args": {"estimator": "sklearn.linear_model.LogisticRegression"},
          "search_space": {"params": {"C": {"float": [0.1, 10.0], "log": True}}}}
    assert tuner.validate(sk).task == "sklearn"


def test_every_shipped_space_uses_only_names_its_task_reads() -> None:
    checked = 0
    for spec in sorted((ROOT / "studies").glob("*.yaml")):
        try:
            tuner.validate(spec)
        except SpaceError as exc:  # pragma: no cover - the failure to report
            raise AssertionError(f"{spec.name}: {exc}") from None
        except tuner.SpecError as exc:
            assert "task_args.dataset" in str(exc), exc  # fashion_cnn's data is downloaded, not shipped
            continue
        checked += 1
    assert checked >= 8
