"""The one base every built-in trainable implements, and the context a trial runs in.

The engine, inside a worker process, does::

    task = get_task("mlp")(task_args, source="studies/x.yaml")   # validate; cheap
    final_metrics = task.run(params, ctx)                         # train, report, evaluate

A task knows nothing of Optuna or Ray: it reads the trial's parameters, reports each epoch
through ``ctx.report`` and returns its final metrics.
"""

from __future__ import annotations

import abc
import difflib
import io
import os
import pathlib
from typing import Any, Callable, ClassVar, Mapping, Protocol, Sequence

from tuner.exceptions import SpecError
from tuner.tasks._param_checks import is_int as _is_int

__all__ = ["Task", "TrialContext", "mark", "write_artifacts", "save_torch_file"]


class TrialContext(Protocol):
    """What a running trial offers its task (the engine provides the implementation)."""

    #: Folder for this trial's files (checkpoints); may not exist yet.
    trial_dir: pathlib.Path
    #: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    device: str
    #: Seed for everything random in this trial.
    seed: int
    #: The study's metric (e.g. ``"val_accuracy"``) and its direction (``"maximize"``/``"minimize"``).
    metric: str
    direction: str
    #: CPU threads allotted to this trial.
    num_threads: int

    def report(self, step: int, metrics: dict[str, float]) -> None:
        """Record ``metrics`` of ``step`` (an epoch, from 1). Raises ``TrialPruned`` when the pruner stops the trial."""

    def set_attr(self, key: str, value: Any) -> None:
        """Store a JSON-able extra result with the trial (e.g. a confusion matrix)."""


def mark(ctx: Any, name: str) -> None:
    """``ctx.mark(name)`` where the context keeps a timing (a re-training for export keeps none)."""
    marker = getattr(ctx, "mark", None)
    if callable(marker):
        marker(name)


def write_artifacts(ctx: Any, what: str, write: Callable[[], Any]) -> None:
    """Run ``write`` (which saves the trial's files); a full disk costs the files, never the trial.

    A trial that trained for an hour has valid metrics even when its checkpoint cannot be
    written (disk full, quota, a folder made read-only meanwhile): the partial ``*.tmp`` files
    are removed, the reason is recorded with the trial and printed by the driver, and the trial
    still ends COMPLETE with its values.
    """
    try:
        write()
    except OSError as exc:
        folder = getattr(ctx, "trial_dir", None)
        for path in (folder.glob("*.tmp") if folder is not None and folder.is_dir() else []):
            path.unlink(missing_ok=True)
        reason = exc.strerror or str(exc) or type(exc).__name__
        message = (f"{what} not saved: {reason} ({exc.filename or folder}); the trial's values are recorded, but "
                   f"export needs the file: free disk space or point artifacts_dir at a writable folder")
        warn = getattr(ctx, "warn", None)
        if callable(warn):
            warn(message)
        else:
            ctx.set_attr("artifact_warning", message)


def save_torch_file(path: pathlib.Path, obj: Any) -> None:
    """``torch.save(obj)`` to ``path``, written aside and renamed: a kill or a full disk never
    leaves half a file. Straight to the file, not through a buffer in memory (a large model would
    take its size twice), and a full disk raises the file's own ``OSError`` (``No space left on
    device``), which torch's writer would reword as an opaque ``RuntimeError``."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        writer = KeepsFileErrors(fh)
        try:
            torch.save(obj, writer)
        except RuntimeError:
            if writer.error is not None:  # torch's rewording ("unexpected pos ..."): say the file's own error
                raise writer.error from None
            raise
    os.replace(tmp, path)


class KeepsFileErrors(io.RawIOBase):
    """A binary file as torch's savers write to it, keeping the first ``OSError`` it raised.

    torch turns a failed write into ``RuntimeError: ... unexpected pos``; the file's own error
    (``No space left on device``) is what a user can act on. An ``io`` object (writable,
    seekable as the file is): ``torch.export.save`` warns about anything else. Used by
    :func:`save_torch_file` and the exporters (``tuner.export._formats``).
    """

    def __init__(self, fh: Any) -> None:
        super().__init__()
        self._fh = fh
        self.error: OSError | None = None

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._fh.seekable()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def write(self, data: Any) -> int:
        try:
            return self._fh.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        if not self._fh.closed:  # io closes this wrapper when it is collected, after the file itself
            try:
                self._fh.flush()
            except OSError as exc:
                self.error = self.error or exc
                raise


class Task(abc.ABC):
    """A built-in trainable: validates its ``task_args`` once, then runs trials.

    Subclasses set :attr:`name`, list their arguments with defaults in :attr:`args_defaults`,
    may check values in :meth:`check_args`, and implement :meth:`run` and :meth:`metric_names`.
    Constructing a task must stay cheap (no data loading, no torch import): the spec
    validator builds one to ask for :meth:`metric_names`.
    """

    #: Registry name, used as ``task:`` in a study spec.
    name: ClassVar[str]
    #: Metric and direction a study uses when its spec names none.
    default_metric: ClassVar[str] = "val_accuracy"
    default_direction: ClassVar[str] = "maximize"
    #: Allowed ``task_args`` and their defaults; any other key is an error.
    args_defaults: ClassVar[Mapping[str, Any]] = {}
    #: The parts of a split that must hold samples (see :meth:`check_part_sizes`): a part with no
    #: samples has no score.
    needed_parts: ClassVar[tuple[str, ...]] = ("train", "val", "test")

    def __init__(self, task_args: Mapping[str, Any] | None = None, *, source: str = "<spec>") -> None:
        self.source = source
        if task_args is not None and not isinstance(task_args, Mapping):
            raise SpecError(source, "task_args", f"expected a mapping, got {type(task_args).__name__}",
                            "e.g. task_args: {dataset: digits}")
        args = dict(task_args or {})
        for key in args:
            if key not in self.args_defaults:
                raise self.arg_error(key, "unknown key", _allowed(key, self.args_defaults))
        self.args: dict[str, Any] = {**self.args_defaults, **args}
        self.check_args(self.args)

    def check_args(self, args: dict[str, Any]) -> None:
        """Validate (and normalise in place) the merged ``task_args``; raise with :meth:`arg_error`."""

    def param_names(self) -> frozenset[str] | None:
        """Every search-space parameter this task reads, or None when it takes any name.

        A parameter the task never reads is tuned for nothing: a typo (``droput``) or another
        task's name (``learning_rate`` for ``lr``) would spend the whole study's trials on a knob
        that changes nothing, so the spec refuses it. None (the default) is for tasks that take
        any name (the scikit-learn task with an estimator whose constructor takes ``**kwargs``).
        """
        return None

    def unknown_param(self, name: str, known: frozenset[str], hint: str) -> tuple[str, str]:
        """(problem, fix) for a search-space parameter outside :meth:`param_names`; ``hint`` is a
        "did you mean ...? " or empty."""
        return (f"task {self.name} has no parameter {name!r}: it would be tuned for nothing",
                f"{hint}task {self.name} reads {', '.join(sorted(known))}")

    def check_params(self, params: Mapping[str, Any]) -> None:
        """Raise ``SpaceError`` for a parameter value this task would refuse in a trial.

        Called before any trial runs with one value at a time (every choice, range end and fixed
        value of the search space), so that a value the task cannot train with is a one-line
        error at ``tuner validate`` and ``tuner run`` instead of a failure in every trial that
        draws it. Must not import torch or load data (the driver runs it). Default: no check.
        """

    def check_data(self) -> None:
        """Read, once before any trial, what every trial reads (a data file, a model folder), and raise
        :class:`SpecError` at ``task_args.<key>`` for what every trial would fail on.

        Called by the spec's validation (``tuner validate``, the start of ``tuner run``), never by a
        trial: a CSV with one class or a word among its numbers used to pass validation and fail
        each of ``max_failures + 1`` trials with the same error. Not in :meth:`check_args`, which
        every trial runs again when it builds its task. Default: no check.
        """

    def check_storage(self, storage_url: str) -> None:
        """Raise :class:`SpecError` for a study this task would look up in the storage at
        ``storage_url`` (the run's) and not find (``task: resnet``'s ``pretrained: {study: NAME}``).

        Called by ``tuner validate`` and by the run before anything is written; opens the storage
        read-only, if at all. Default: no check.
        """

    def unknown_metric(self, metric: str, known: Sequence[str]) -> tuple[str, str] | None:
        """(problem, fix) for a study metric outside :meth:`metric_names`, or None for the spec's
        own ("task T does not report M; did you mean ...? known: ...")."""
        return None

    @abc.abstractmethod
    def run(self, params: dict[str, Any], ctx: TrialContext) -> dict[str, float]:
        """Train one trial with ``params``, calling ``ctx.report`` once per epoch.

        Returns the final metrics: the best epoch's validation metrics plus the ``test_*``
        metrics of that best model. ``TrialPruned`` raised by ``ctx.report`` must propagate.
        """

    @abc.abstractmethod
    def metric_names(self) -> list[str]:
        """Every metric name this task reports or returns (for validating a spec's ``metric``)."""

    def arg_error(self, key: str, problem: str, fix: str | None = None) -> SpecError:
        """A :class:`SpecError` located at ``task_args.<key>`` of this task's spec."""
        return SpecError(self.source, f"task_args.{key}", problem, fix)

    def check_split_args(self, args: dict[str, Any], *, unit: str = "sample") -> None:
        """Check the arguments every data-backed task shares: ``split``, ``split_seed``, ``max_samples``.

        A built-in data set's size is known without reading it, so a split that leaves one of
        :attr:`needed_parts` empty is refused here rather than in every trial (a file's size is
        only known once a trial reads it: :meth:`check_part_sizes` refuses it there).
        """
        from tuner.data._splits import PART_NAMES, check_split, split_sizes
        from tuner.data.bundled import BUNDLED_SIZES

        args["split"] = list(check_split(args["split"], source=self.source, key="task_args.split"))
        if not _is_int(args["split_seed"]):
            raise self.arg_error("split_seed", f"expected an integer, got {args['split_seed']!r}", "e.g. split_seed: 0")
        max_samples = args["max_samples"]
        if max_samples is not None and (not _is_int(max_samples) or max_samples < 10):
            raise self.arg_error("max_samples", f"expected an integer >= 10, got {max_samples!r}",
                                 f"remove it to use every {unit}")
        dataset = args.get("dataset")
        n = BUNDLED_SIZES.get(dataset) if isinstance(dataset, str) else None
        if n is not None and args.get("classes") is None:  # a class subset's size is the data's to say
            n = min(n, max_samples) if max_samples is not None else n
            self.check_part_sizes(dataset, dict(zip(PART_NAMES, split_sizes(n, args["split"]))))

    def check_part_sizes(self, name: str, sizes: Mapping[str, int]) -> None:
        """Refuse data ``name`` whose split leaves one of :attr:`needed_parts` without samples.

        ``sizes`` maps part names (``train``, ``val``, ``test``) to their sizes; the parts this
        task does not need are not checked. The error is at ``task_args.split``.
        """
        from tuner.data._splits import check_parts

        check_parts({part: size for part, size in sizes.items() if part in self.needed_parts},
                    n=sum(sizes.values()), name=name, split=self.args["split"], source=self.source,
                    key="task_args.split")

    def check_label_arg(self, args: dict[str, Any], key: str = "label", *, optional: bool = True) -> None:
        """A column given by name or index (``None`` allowed when ``optional``)."""
        value = args[key]
        if (value is None and optional) or (isinstance(value, str) and value) or _is_int(value):
            return
        raise self.arg_error(key, f"expected a column name or index, got {value!r}", f"e.g. {key}: {key if key != 'label' else 'target'}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.args!r})"


def _allowed(key: str, allowed: Mapping[str, Any]) -> str:
    names = sorted(allowed)
    if not names:
        return "this task takes no task_args"
    close = difflib.get_close_matches(key, names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}allowed keys: {', '.join(names)}"
