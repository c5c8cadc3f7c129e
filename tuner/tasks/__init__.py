"""Built-in trainables behind one base, :class:`Task`, looked up by name.

``get_task("mlp")(task_args, source=...)`` validates the task's arguments; ``.run(params, ctx)``
trains one trial. Tasks are imported on first lookup, so importing this package stays light
(no torch).
"""

from tuner.tasks._base import Task, TrialContext
from tuner.tasks._classifier import TorchClassifierTask
from tuner.tasks._registry import get_task, register_task, task_names

__all__ = ["Task", "TrialContext", "TorchClassifierTask", "get_task", "register_task", "task_names"]
