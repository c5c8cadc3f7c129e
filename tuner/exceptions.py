"""One exception family for tuner.

Every error a user can cause by what they wrote (a spec, a search space, a flag, a study
name) is a :class:`UserInputError`: the CLI prints its one-line message and exits with
code 2, without a traceback. Everything else is a bug or an environment failure and keeps
its traceback.
"""

from __future__ import annotations

from typing import Iterator

__all__ = [
    "TunerError",
    "UserInputError",
    "SpecError",
    "SpaceError",
    "StudyNotFoundError",
    "StorageError",
    "TrialPruned",
    "TooManyFailuresError",
    "exception_chain",
]


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what it was raised from or during, and so on (each once, cycles end it).

    Libraries wrap: Optuna wraps SQLAlchemy's errors, SQLAlchemy the driver's, Ray Tune a
    callback's error as text in a TuneError. What matters is often a few links down.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


class TunerError(Exception):
    """Base of every error raised on purpose by tuner."""

    exit_code: int = 1


class UserInputError(TunerError):
    """Something the user wrote is wrong; the message says what and how to fix it."""

    exit_code = 2


class SpecError(UserInputError):
    """A study spec (or a flag overriding it) is invalid.

    The message always has the shape ``source: key.path: problem; fix`` so that users
    find the offending line at once and tools can parse it.
    """

    def __init__(self, source: str | None, path: str, problem: str, fix: str | None = None) -> None:
        self.source = source or "<spec>"
        self.path = path or "<root>"
        self.problem = problem
        self.fix = fix
        message = f"{self.source}: {self.path}: {problem}"
        if fix:
            message += f"; {fix}"
        super().__init__(" ".join(message.splitlines()))  # one line, whatever breaks a value held


class SpaceError(SpecError):
    """A search space (file or inline mapping) is invalid."""


class StudyNotFoundError(UserInputError):
    """The named study does not exist in the storage."""


class StorageError(UserInputError):
    """The storage URL is malformed, unreachable or not writable."""


class TooManyFailuresError(TunerError):
    """The run stopped because more trials failed than ``max_failures`` allows."""

    exit_code = 3


class TrialPruned(Exception):
    """Raised by ``ctx.report`` when the pruner stops the trial.

    Objectives may let it propagate (the trial is recorded as PRUNED) or catch it to clean up
    and re-raise. It deliberately does not inherit from :class:`TunerError`: it is control flow,
    not an error.
    """
