"""tuner: hyperparameter tuning for PyTorch and scikit-learn models.

Optuna decides what to try, Ray Tune decides where and when it runs, and the SQL storage
remembers everything. Importing this package is cheap: Optuna, Ray and torch load only when
a function that needs them is called.
"""

from __future__ import annotations

from typing import Any

from tuner.exceptions import (
    SpaceError,
    SpecError,
    StorageError,
    StudyNotFoundError,
    TooManyFailuresError,
    TrialPruned,
    TunerError,
    UserInputError,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "run",
    "validate",
    "load_study",
    "list_studies",
    "best_trial",
    "trial_details",
    "delete_study",
    "watch",
    "report",
    "export",
    "load",
    "SearchSpace",
    "StudySpec",
    "TrialContext",
    "TrialPruned",
    "TunerError",
    "UserInputError",
    "SpecError",
    "SpaceError",
    "StorageError",
    "StudyNotFoundError",
    "TooManyFailuresError",
]

_LAZY = {
    "run": ("tuner._api", "run"),
    "validate": ("tuner._api", "validate"),
    "load_study": ("tuner._api", "load_study"),
    "list_studies": ("tuner._api", "list_studies"),
    "best_trial": ("tuner._api", "best_trial"),
    "trial_details": ("tuner._trial_details", "trial_details"),
    "delete_study": ("tuner._api", "delete_study"),
    "watch": ("tuner._watch", "watch"),
    "report": ("tuner.report", "report"),  # the callable module: tuner.report(name, "out.html"), tuner.report.build_report
    "export": ("tuner.export", "_self"),  # the callable module: tuner.export(name, "out/"), tuner.export.load
    "load": ("tuner.export", "load"),
    "SearchSpace": ("tuner.space", "SearchSpace"),
    "StudySpec": ("tuner.spec", "StudySpec"),
    "TrialContext": ("tuner.engine._context", "TrialContext"),
}


def __getattr__(name: str) -> Any:
    """Resolve the public names lazily so that ``import tuner`` stays light."""
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tuner' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
