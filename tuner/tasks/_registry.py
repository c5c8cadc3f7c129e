"""Task names mapped to ``"module:Class"`` strings, imported on first use.

Looking a task up imports only its module, so ``import tuner.tasks`` (and spec validation)
stays free of torch.
"""

from __future__ import annotations

import difflib
import importlib

from tuner.exceptions import SpecError
from tuner.tasks._base import Task

__all__ = ["register_task", "get_task", "task_names"]

_TASKS: dict[str, str | type[Task]] = {
    "mlp": "tuner.tasks.mlp:MLPTask",
    "text": "tuner.tasks.text:TextTask",
    "cnn": "tuner.tasks.cnn:CNNTask",
    "resnet": "tuner.tasks.resnet:ResNetTask",
    "sklearn": "tuner.tasks.sklearn_task:SklearnTask",
}


def register_task(name: str, target: str | type[Task]) -> None:
    """Make ``task: <name>`` refer to ``target`` (a ``"module.path:ClassName"`` string or a Task class)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"task name must be a non-empty string, got {name!r}")
    if isinstance(target, str):
        if target.count(":") != 1 or not all(target.split(":")):
            raise ValueError(f"task target must look like 'module.path:ClassName', got {target!r}")
    elif not (isinstance(target, type) and issubclass(target, Task)):
        raise TypeError(f"task target must be a Task subclass or 'module:Class' string, got {target!r}")
    _TASKS[name] = target


def task_names() -> list[str]:
    """Registered task names, sorted."""
    return sorted(_TASKS)


def get_task(name: str, *, source: str = "<spec>", path: str = "task") -> type[Task]:
    """The Task class registered as ``name``; an unknown name is a SpecError at ``source: path``."""
    target = _TASKS.get(name) if isinstance(name, str) else None
    if target is None:
        close = difflib.get_close_matches(str(name), task_names(), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise SpecError(source, path, f"unknown task {name!r}", f"{hint}known tasks: {', '.join(task_names())}")
    if isinstance(target, str):
        module_name, class_name = target.split(":")
        cls = getattr(importlib.import_module(module_name), class_name)
        if not (isinstance(cls, type) and issubclass(cls, Task)):
            raise TypeError(f"{target} (task {name!r}) is not a tuner.tasks.Task subclass")
        _TASKS[name] = cls
        return cls
    return target
