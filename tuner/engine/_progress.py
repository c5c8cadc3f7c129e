"""Progress of a run: a live status line in a terminal, plain log lines otherwise.

Updated only from Tune's callbacks (a trial ended, the event loop turned), never by polling.
"""

from __future__ import annotations

import sys
import time
from typing import IO, TYPE_CHECKING, Any

from tuner.engine._plugins import plugins_text

if TYPE_CHECKING:
    from tuner.spec import StudySpec


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class Progress:
    """Prints what a run is doing; ``quiet`` silences all but the final summary line."""

    def __init__(self, *, quiet: bool = False, stream: IO[str] | None = None, live: bool | None = None,
                 mute_workers: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        # `tuner run --quiet`: the final line alone, so the trials' own output (print, warnings) and
        # Ray's warnings are held back too. tuner.run() is quiet by default but keeps them: they are
        # the user's objective speaking, which a notebook should show.
        self.mute_workers = mute_workers
        self.live = (self.stream.isatty() if live is None else live) and not quiet
        self._t0 = time.monotonic()
        self._last_tick = 0.0
        self._best: Any = None
        self._line_open = False
        self._maximize: list[bool] = [False]
        # Several objectives: the values of the Pareto-optimal trials so far (the status line counts them).
        self._front: list[list[float]] = []

    def _write(self, text: str) -> None:
        if self._line_open:
            self.stream.write("\r\033[K")
            self._line_open = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        if not self.quiet:
            self._write(text)

    def warn(self, text: str) -> None:
        """A line shown whatever the verbosity: something the user has to act on, or a deletion they asked for."""
        self._write(text)

    def track(self, directions: Any, study: Any) -> None:
        """Keep the best value (or the Pareto front) of ``study`` from its finished trials on."""
        self._maximize = [d == "maximize" for d in directions]
        if len(self._maximize) > 1:
            self._front = _initial_front(study)
        else:
            self._best = _initial_best(study)

    def best_value(self) -> Any:
        """The best value so far, or the Pareto front's values with several objectives (as a run's summary holds it)."""
        return [list(v) for v in self._front] if len(self._maximize) > 1 else self._best

    def follow_run_started(self, started: Any) -> None:
        """Count the status line's elapsed time from ``started`` (Unix seconds), a run's start seen from elsewhere."""
        try:
            self._t0 = time.monotonic() - max(0.0, time.time() - float(started))
        except (TypeError, ValueError):
            pass

    def start(self, spec: "StudySpec", summary: Any, state: Any) -> None:
        self._t0 = time.monotonic()
        self.track(spec.directions, state.study)
        if self.quiet:
            return
        from tuner.storage import redact

        verb = "resuming" if summary.resumed else "starting"
        metrics = getattr(spec, "metrics", None) or ["value"] * len(spec.directions)
        goal = goal_text(metrics, spec.directions)
        # The storage is named (its password hidden): the run used to say which only with --json.
        self._write(f"{verb} study {spec.name!r} ({goal}) in {redact(summary.storage_url)}: "
                    f"{summary.finished_before}/{spec.n_trials} trials finished, "
                    f"concurrency {spec.concurrency}, {plugins_text(spec)}")
        if summary.recovered:
            self._write(f"marked {len(summary.recovered)} trial(s) left RUNNING by a stopped run as FAIL: "
                        f"{', '.join(map(str, summary.recovered[:10]))}")

    def _status(self, state: Any) -> str:
        """The status line. Running counts the trials started on a worker; trials Tune holds for
        a free slot are queued (with concurrency above what the cluster fits, Tune holds up to
        ``concurrency`` trials, of which only as many run as fit)."""
        elapsed = time.monotonic() - self._t0
        running = sum(1 for trial_id in state.running if trial_id in state.started)
        queued = len(state.running) - running
        return (f"[{elapsed:6.1f}s] finished {state.finished}/{state.target}  running {running}"
                + (f", queued {queued}" if queued else "")
                + f"  complete {state.complete}  pruned {state.pruned}  failed {state.failed}  {self._best_text()}")

    def _best_text(self) -> str:
        """The status line's last field: the best value, or with several objectives the size of
        the Pareto front (a list of value lists grows past any line's width)."""
        if len(self._maximize) > 1:
            return f"pareto front {len(self._front)}"
        return f"best {_fmt(self._best)}"

    def trial_done(self, number: int, state_name: str, values: Any, state: Any, *, reason: str | None = None,
                   pruned_at: dict[str, Any] | None = None) -> None:
        """A trial ended; ``reason``: why it failed (the stored error), for a FAIL; ``pruned_at``:
        the step and study-metric value a pruned trial stopped at (the worker's ``PRUNED_AT_KEY``).

        A failure gets a line of its own in a terminal as well, where the other trials only
        update the status line: it is what the user must go and read.
        """
        if values is not None and len(values) == 1:
            v = values[0]
            if self._best is None or (v > self._best if self._maximize[0] else v < self._best):
                self._best = v
        elif values is not None and len(values) == len(self._maximize) > 1 and state_name == "COMPLETE":
            self._front = _add_to_front(self._front, list(values), self._maximize)
        if self.quiet:
            return
        failed = state_name == "FAIL"
        if self.live:
            if failed:
                self._write(f"trial {number} failed: {reason or 'no error recorded'}")
            self.stream.write("\r\033[K" + self._status(state))
            self.stream.flush()
            self._line_open = True
        elif failed:
            self._write(f"trial {number} failed: {reason or 'no error recorded'} | " + self._status(state))
        elif state_name == "PRUNED":
            self._write(f"trial {number} pruned{_pruned_text(pruned_at)} | " + self._status(state))
        else:
            shown = values[0] if values is not None and len(values) == 1 else values
            self._write(f"trial {number} {state_name.lower()} value={_fmt(shown)} | " + self._status(state))

    def tick(self, state: Any) -> None:
        if not self.live:
            return
        now = time.monotonic()
        if now - self._last_tick >= 0.5:
            self._last_tick = now
            self.stream.write("\r\033[K" + self._status(state))
            self.stream.flush()
            self._line_open = True

    def end(self, summary: Any) -> None:
        if not self.quiet:
            self._write(format_summary(summary))
            Progress.said_how_it_ended = True

    #: Set once a run's last line (how it ended, how to resume) is on the console: a second
    #: Ctrl-C that lands after it need not say "interrupted; run the same command again" twice.
    said_how_it_ended = False


def format_summary(summary: Any) -> str:
    """One line saying how a run ended, and how to resume when it did not finish."""
    best = summary.best_value
    reason = {None: "done", "timeout": "stopped: timeout reached", "max_failures": "stopped: too many failures",
              "interrupted": "interrupted", "stop_requested": "stopped by `tuner stop`"}.get(
        summary.stopped_reason, summary.stopped_reason)
    # Trials the stop itself ended (Ctrl-C, max_failures) did not fail: counted apart.
    cut_short = getattr(summary, "cut_short", 0)
    unfinished = f", {cut_short} stopped unfinished" if cut_short else ""
    outcome = format_best(best, summary.study_name)
    line = (f"{reason}: study {summary.study_name!r} has {summary.finished_total}/{summary.n_trials} finished trials "
            f"(this run: {summary.complete} complete, {summary.pruned} pruned, {summary.failed} failed{unfinished}) "
            f"in {summary.elapsed_s:.1f}s; {outcome}")
    if summary.stopped_reason in ("interrupted", "timeout", "stop_requested") and summary.finished_total < summary.n_trials:
        line += "; run the same command again to resume"
    return line


def goal_text(metrics: Any, directions: Any) -> str:
    """``maximize val_accuracy, minimize n_params``: what a study's values are and which way is better."""
    return ", ".join(f"{d} {m}" for m, d in zip(metrics, directions))


def format_best(best: Any, study_name: str) -> str:
    """``best 0.98``, or with several objectives how many trials are Pareto-optimal and where to see them."""
    if _is_front(best):
        if not best:  # no trial completed: there is nothing for `tuner best` to list
            return "no pareto front: no trial completed"
        return (f"pareto front of {len(best)} trial{'s' if len(best) != 1 else ''} "
                f"(tuner best {study_name} lists them)")
    return f"best {_fmt(best)}"


def failure_text(error: Any) -> str | None:
    """A stored trial error (``tuner:error``) as one short line: ``Type: message``."""
    if not isinstance(error, dict):
        return None
    message = " ".join(str(error.get("message") or "").split())
    text = f"{error.get('type') or 'Error'}: {message}" if message else str(error.get("type") or "Error")
    return text if len(text) <= 300 else text[:297] + "..."


def _pruned_text(pruned_at: dict[str, Any] | None) -> str:
    """`` at step 4 value=0.31``: where the pruner stopped the trial (its last report), when the worker said."""
    if not isinstance(pruned_at, dict) or pruned_at.get("step") is None:
        return ""
    value = pruned_at.get("value")
    return f" at step {pruned_at['step']}" + (f" value={_fmt(value)}" if value is not None else "")


def _is_front(best: Any) -> bool:
    """Whether a run summary's best is a Pareto front (a list of value lists), as several objectives give."""
    return isinstance(best, (list, tuple)) and all(isinstance(v, (list, tuple)) for v in best)


def _dominates(a: list[float], b: list[float], maximize: list[bool]) -> bool:
    """``a`` at least as good as ``b`` in every objective and better in one (Optuna's definition)."""
    better = False
    for x, y, up in zip(a, b, maximize):
        if (x < y) if up else (x > y):
            return False
        better = better or x != y
    return better


def _add_to_front(front: list[list[float]], values: list[float], maximize: list[bool]) -> list[list[float]]:
    """The Pareto front after a new complete trial: in time linear in the front, not in the study."""
    if any(_dominates(kept, values, maximize) for kept in front):
        return front
    return [kept for kept in front if not _dominates(values, kept, maximize)] + [values]


def _initial_front(study: Any) -> list[list[float]]:
    try:
        return [list(t.values) for t in study.best_trials]
    except Exception:  # noqa: BLE001 - the status line's count is informative only
        return []


def _initial_best(study: Any) -> Any:
    try:
        return study.best_value if len(study.directions) == 1 else None
    except ValueError:
        return None
