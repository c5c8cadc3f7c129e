"""The ``tuner`` command line: parse, call one public API function, format the result.

Mistakes in user input (spec, flags, study names, storage URLs) print one line and exit 2;
too many failed trials exit 3; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Callable

import click

from tuner.exceptions import TunerError, UserInputError

_STORAGE_HELP = "Storage URL (default: $TUNER_STORAGE, or sqlite:///tuner.db in the working directory)."
#: `tuner run` alone reads a spec, so only its default includes the spec's storage: (the others
#: said so too, and a study run with `storage: sub.db` was then "not found" by `tuner show`).
_SPEC_STORAGE_HELP = "Storage URL (default: $TUNER_STORAGE, the spec's storage:, or sqlite:///tuner.db)."


def _fail(message: str, code: int = 2) -> None:
    # One line whatever a quoted value holds (a name or URL with a line break in it).
    click.echo("error: " + " ".join(message.splitlines()), err=True)
    sys.exit(code)


def _guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn tuner's errors, and database errors no command explained, into one-line messages and exit codes."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TunerError as exc:
            _fail(str(exc), exc.exit_code)
        except Exception as exc:  # noqa: BLE001 - a database error becomes one line; anything else is raised
            from tuner.storage import storage_failure

            failure = storage_failure(exc, kwargs.get("storage"))
            if failure is None:
                raise
            _fail(str(failure), failure.exit_code)
        except KeyboardInterrupt:
            from tuner.engine._progress import Progress

            if not Progress.said_how_it_ended:  # the run's own last line said it already
                click.echo("error: interrupted; run the same command again to resume", err=True)
            # Everything this run stores is stored by now. Leave at once: a Ray interrupted while
            # starting can still have threads that crash the interpreter's finalisation (exit 139);
            # the processes it started share this one's fate and end with it.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)

    return wrapper


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)) and len(value) == 1:
        return _fmt(value[0])
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def _fmt_param(value: Any) -> str:
    """A parameter's value as ``tuner trial`` prints it: None is one a choice can hold
    (``grad_clip: null``), a per-layer list stays a list however long (``[298]``), and text
    that reads as a number or None is quoted; ``-`` stays for what is missing."""
    from tuner._trial_details import _param

    return _param(value)


class _UsageLine(click.UsageError):
    """A usage error shown as tuner's other input errors are: one line on stderr, exit 2."""

    def __init__(self, message: str, ctx: click.Context | None, path: str) -> None:
        super().__init__(message, ctx)
        self.path = path

    def show(self, file: Any = None) -> None:
        path = self.path
        click.echo("error: " + " ".join(f"{path}: {self.format_message()} ({path} --help lists what it takes)"
                                        .splitlines()), err=True)


def _one_line(exc: click.UsageError, fallback_path: str) -> click.UsageError:
    # Bare ``tuner`` (NoArgsIsHelpError) keeps click's help text. Some parser errors (an option
    # missing its value) carry no context: the command being parsed is then named by the caller.
    if isinstance(exc, (_UsageLine, click.exceptions.NoArgsIsHelpError)):
        return exc
    path = exc.ctx.command_path if exc.ctx is not None else fallback_path
    return _UsageLine(exc.format_message(), exc.ctx, path)


class _Group(click.Group):
    """Click's usage errors print three lines (usage, hint, error); tuner's input errors print one."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as exc:
            raise _one_line(exc, "tuner") from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _one_line(exc, " ".join(filter(None, [ctx.command_path, ctx.invoked_subcommand]))) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tuner")
def main() -> None:
    """tuner: hyperparameter tuning with Optuna, Ray Tune and SQL storage."""


def _parse_set(values: tuple[str, ...]) -> dict[str, Any]:
    import yaml

    from tuner.spec import SET_NULL

    out: dict[str, Any] = {}
    for item in values:
        if "=" not in item:
            raise UserInputError(f"--set {item!r}: expected KEY=VALUE, e.g. --set task_args.max_samples=500")
        key, _, raw = item.partition("=")
        if not raw.strip():  # an override of None means "flag not given": it would be dropped without a word
            raise UserInputError(f"--set {item!r}: the value is empty, which would leave the spec as it is; "
                                 f"give one, e.g. --set {key.strip() or 'KEY'}=VALUE (or {key.strip() or 'KEY'}=null "
                                 "for the default)")
        try:
            value = yaml.safe_load(raw)
        except (yaml.YAMLError, ValueError, RecursionError):  # ValueError: an int of over 4300 digits
            value = raw  # kept as text; the spec's validator says what it should be
        out[key.strip()] = SET_NULL if value is None else value  # null typed on purpose: the key's default
    return out


def _overrides(**flags: Any) -> dict[str, Any]:
    mapping = {"n_trials": "n_trials", "timeout": "timeout", "concurrency": "concurrency", "cpus": "resources.cpus",
               "gpus": "resources.gpus", "sampler": "sampler", "pruner": "pruner", "seed": "seed",
               "max_failures": "max_failures", "name": "name", "trial_timeout": "trial_timeout",
               "artifacts_dir": "artifacts_dir"}
    out = {mapping[k]: v for k, v in flags.items() if k in mapping and v is not None}
    out.update(_parse_set(flags.get("set_", ()) or ()))
    return out


def _spec_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--name", help="Study name (overrides name:)."),
        click.option("--n-trials", type=int, help="Finished trials to reach (overrides n_trials:)."),
        click.option("--timeout", help="Stop starting trials after this long: 600, 90s, 10m, 2h."),
        click.option("--trial-timeout", help="Stop and fail any single trial running longer than this."),
        click.option("--concurrency", type=int, help="Trials running at once."),
        click.option("--cpus", type=float, help="CPUs per trial (fractions allowed)."),
        click.option("--gpus", type=float, help="GPUs per trial (fractions pack trials on one GPU)."),
        click.option("--sampler", help="tpe, random, grid, cmaes, gp, qmc or nsga2."),
        click.option("--pruner", help="none, median, percentile, asha or hyperband."),
        click.option("--seed", type=int, help="Seed for the sampler and the trials."),
        click.option("--max-failures", type=int, help="Stop a run once more than this many of its trials failed (0: at the first failure)."),
        click.option("--artifacts-dir", help="Folder for trial checkpoints (default: tuner_runs/ next to the database)."),
        click.option("--set", "set_", multiple=True, metavar="KEY=VALUE", help="Override any spec key, e.g. task_args.max_samples=500."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@_spec_options
@click.option("--storage", help=_SPEC_STORAGE_HELP)
@click.option("--ray-address", help="Join this Ray cluster (e.g. auto or 10.0.0.1:6379) instead of starting one (local: start one, the default).")
@click.option("--num-cpus", type=float, help="CPUs the local Ray instance declares (default: all).")
@click.option("--num-gpus", type=float, help="GPUs the local Ray instance declares (default: detected).")
@click.option("--force", is_flag=True, help="Delete an existing study of this name that has another search space, metric, direction, "
                   "objective, task or task_args, and start it over.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the final line.")
@click.option("--json", "as_json", is_flag=True, help="Print the run's summary as JSON at the end.")
@_guard
def run(spec: str, storage: str | None, ray_address: str | None, num_cpus: float | None, num_gpus: float | None,
        force: bool, quiet: bool, as_json: bool, **flags: Any) -> None:
    """Run (or resume) the study described by SPEC until n_trials trials have finished."""
    from tuner._api import run_storage_url, validate

    _check_ray_count("--num-cpus", num_cpus, "CPUs")
    _check_ray_count("--num-gpus", num_gpus, "GPUs")
    # The spec is checked before Ray and Tune are imported (1.5 s): a mistake is reported at once.
    overrides = _overrides(**flags)
    checked = validate(spec, overrides)
    url = run_storage_url(checked, storage, overrides)
    from tuner.engine._driver import run_study
    from tuner.engine._progress import Progress, format_summary
    from tuner.exceptions import TooManyFailuresError

    progress = Progress(quiet=quiet or as_json, mute_workers=quiet or as_json)  # --json: stdout is JSON alone
    try:
        _study, summary = run_study(checked, url, ray_address=ray_address, num_cpus=num_cpus, num_gpus=num_gpus,
                                    force=force, progress=progress)
    except TooManyFailuresError as exc:
        summary = exc.summary  # type: ignore[attr-defined]
        if quiet and not as_json:
            click.echo(format_summary(summary), err=True)
        if as_json:
            _echo_json(summary.__dict__)
        raise
    if as_json:
        _echo_json({**summary.__dict__, "finished_total": summary.finished_total})
    elif quiet:
        click.echo(format_summary(summary))
        Progress.said_how_it_ended = True
    if summary.stopped_reason == "interrupted":
        sys.exit(130)
    if summary.stopped_reason == "stop_requested":
        sys.exit(1)  # stopped short of n_trials, as `tuner watch` says of such a run


#: The most CPUs or GPUs --num-cpus / --num-gpus may declare (Ray's own limit is 1e14; no machine has this many).
_MAX_RAY_COUNT = 1_000_000


def _check_storage_form(checked: Any, storage: str | None, flags: dict[str, Any]) -> None:
    """Refuse in `tuner validate` a storage URL `tuner run` would refuse (`sqlite:///x.db?timeout=5`,
    `mongodb://...`), naming the spec's `storage:` key when the URL is the file's; nothing is opened."""
    import os

    from tuner.exceptions import SpecError, StorageError
    from tuner.storage import check_url, resolve_url

    url = resolve_url(storage, checked.storage)
    try:
        check_url(url)
    except StorageError as exc:
        typed = storage or os.environ.get("TUNER_STORAGE") or "storage" in _parse_set(flags.get("set_", ()) or ())
        if checked.storage is None or typed:
            raise
        raise SpecError(checked.source, "storage", str(exc).removeprefix("storage ")) from None


def _check_ray_count(option: str, value: float | None, what: str) -> None:
    """Refuse a count Ray's start would fail on (negative, fractional, NaN, infinite) before anything
    starts or is written: Ray raises a ValueError from deep inside ``ray.init``, a 58-line traceback."""
    if value is None:
        return
    if not (0 <= value <= _MAX_RAY_COUNT and value == int(value)):  # NaN fails the range test, inf too
        raise UserInputError(f"{option} {value:g}: the local Ray instance declares a whole number of {what} from 0 "
                             f"to {_MAX_RAY_COUNT}; give one, e.g. {option} 2, or leave {option} out for "
                             + ("all of them" if what == "CPUs" else "the ones detected"))


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@_spec_options
@click.option("--storage", help="Where a run would look a task's pretrained: {study: NAME} up (as tuner run's "
              "--storage; nothing is written). " + _SPEC_STORAGE_HELP.removeprefix("Storage URL "))
@click.option("--json", "as_json", is_flag=True, help="Print the resolved spec as JSON.")
@_guard
def validate(spec: str, storage: str | None, as_json: bool, **flags: Any) -> None:
    """Check SPEC and its search spaces without running anything."""
    from tuner._api import validate as _validate
    from tuner.engine._plugins import plugins_text
    from tuner.spec import check_task_storage
    from tuner.storage import resolve_url

    checked = _validate(spec, _overrides(**flags))
    _check_storage_form(checked, storage, flags)
    check_task_storage(checked, resolve_url(storage, checked.storage))
    if as_json:
        from tuner.storage import redact_urls

        # notes: what validation adjusted; a password in storage: is not echoed into CI logs
        _echo_json({**redact_urls(checked.to_dict()), "notes": list(checked.notes)})
        return
    space = checked.search_space
    what = f"task {checked.task}" if checked.task else f"objective {checked.objective}"
    metrics = ", ".join(f"{m} ({d})" for m, d in zip(checked.metrics, checked.directions))
    first = f" ({len(checked.enqueue)} enqueued to run first)" if checked.enqueue else ""
    click.echo(f"{spec}: ok: study {checked.name!r}, {what}, {len(space.names)} parameters, metric {metrics}, "
               f"{checked.n_trials} trials{first}, concurrency {checked.concurrency}, {plugins_text(checked)}")


@main.command("ls")
@click.option("--storage", help=_STORAGE_HELP)
@click.option("--json", "as_json", is_flag=True)
@_guard
def ls(storage: str | None, as_json: bool) -> None:
    """List the studies in the storage."""
    from tuner._api import list_studies

    studies = list_studies(storage)
    if as_json:
        _echo_json([s.__dict__ for s in studies])
        return
    if not studies:
        click.echo("no studies yet")
        return
    # "failed" counts the trials that failed on their own; "stopped" those a run's stop (Ctrl-C,
    # `tuner stop`, max_failures) or death ended unfinished, which a resume runs again.
    click.echo(f"{'study':30} {'state':9} {'complete':>8} {'pruned':>6} {'failed':>6} {'stopped':>7} {'running':>7} "
               f"{'best':>12} {'metric':24} last activity")
    for s in studies:
        c = s.counts
        click.echo(f"{s.name[:30]:30} {s.state:9} {c.get('COMPLETE', 0):>8} {c.get('PRUNED', 0):>6} "
                   f"{c.get('FAIL', 0) - s.stopped_unfinished:>6} {s.stopped_unfinished:>7} "
                   f"{c.get('RUNNING', 0):>7} {_fmt(s.best):>12} {_metric_label(s.metrics, s.directions):24} "
                   f"{s.last_activity or '-'}")


def _metric_label(metrics: list[str], directions: list[str]) -> str:
    """What the best column holds, as the dashboard's studies page says it: the first metric, and
    ``(+1)`` for each further objective (the column shows the first objective's best value)."""
    if not directions:
        return "-"
    label = f"{(metrics or ['value'])[0]} ({'max' if directions[0] == 'maximize' else 'min'})"
    if len(directions) > 1:
        label += f" +{len(directions) - 1}"
    return label if len(label) <= 24 else label[:23] + "~"


@main.command()
@click.argument("study")
@click.option("--storage", help=_STORAGE_HELP)
@click.option("--top", default=10, show_default=True, help="How many of the best trials to list.")
@click.option("--json", "as_json", is_flag=True)
@_guard
def show(study: str, storage: str | None, top: int, as_json: bool) -> None:
    """Show a study: counts by state, best trial, top trials and recent failures."""
    from tuner._api import study_details
    from tuner.engine._study import run_line, shown_counts

    if top < 0:
        raise UserInputError("--top must be >= 0")
    d = study_details(study, storage, top=top)
    if as_json:
        _echo_json(d)
        return
    counts = ", ".join(f"{k.lower()} {v}" for k, v in sorted(shown_counts(d["counts"], d["stopped_unfinished"]).items())) \
        or "no trials"
    metrics = d["metrics"] or ["value"] * len(d["directions"])
    click.echo(f"study {d['name']} ({d['state']}): {counts}; "
               f"{', '.join(f'{m} ({x})' for m, x in zip(metrics, d['directions']))}")
    if isinstance(d["spec"], dict):
        click.echo(f"spec: {_spec_line(d['spec'])} (--json for all of it)")
    if d["top"]:
        if len(d["directions"]) > 1:  # several objectives rank nothing: the trials shown are the Pareto front
            size = len((d["best"] or {}).get("pareto_front") or d["top"])
            click.echo(f"pareto front: {len(d['top'])} of {size}:" if len(d["top"]) < size else f"pareto front: all {size}:")
        else:
            click.echo(f"top {len(d['top'])}:")
        values = [_fmt(row["values"]) for row in d["top"]]
        width = max(12, *map(len, values))  # a multi-objective [0.988889, 16960] keeps the columns aligned
        click.echo(f"  {'#':>5} {'value':>{width}} {'duration':>9}  params")
        for row, value in zip(d["top"], values):
            # the names the objective saw (lr, width: [..]), as `tuner best` prints them
            params = ", ".join(f"{k}={_fmt_param(v)}" for k, v in (row.get("objective_params") or row["params"]).items())
            click.echo(f"  {row['number']:>5} {value:>{width}} {_fmt(row['duration_s']):>9}  {params}")
    for row in d["recent_failures"]:
        # a trial its run's stop ended is no failure (tuner ls and the counts above say "stopped")
        what = "stopped" if row.get("stopped_unfinished") else "failed"
        click.echo(f"  {what} #{row['number']}: {row['error'] or 'no error recorded'}")
    if d["recent_failures"]:
        last = d["recent_failures"][-1]["number"]
        click.echo(f"  (tuner trial {shlex.quote(d['name'])} {last} prints a trial in full, a failure's traceback "
                   f"included)")
    if d["runs"]:
        shown = d["runs"][-_RUNS_SHOWN:]
        click.echo(f"runs: {len(d['runs'])}" + (f", the last {len(shown)}:" if len(shown) < len(d["runs"]) else ":"))
        for run in shown:
            click.echo(f"  {run_line(run)}")


#: How many of a study's logged runs `tuner show` lists (--json has them all).
_RUNS_SHOWN = 5


@main.command()
@click.argument("study")
@click.argument("number", type=int)
@click.option("--storage", help=_STORAGE_HELP)
@click.option("--json", "as_json", is_flag=True)
@_guard
def trial(study: str, number: int, storage: str | None, as_json: bool) -> None:
    """Show one trial in full: values, parameters, metrics, curve, where it ran, its error's traceback, its files."""
    from tuner._json import jsonable
    from tuner._trial_details import trial_details, trial_lines

    d = trial_details(study, number, storage)
    if as_json:
        _echo_json(jsonable(d))
        return
    click.echo("\n".join(trial_lines(d)))


def _named_values(metrics: list[str], values: list[float] | None) -> str:
    """``val_accuracy 0.98, n_params 16960``: a trial's objective values, each with its metric's name."""
    if not values:
        return "no value"
    return ", ".join(f"{m} {_fmt(v)}" for m, v in zip(metrics, values))


def _spec_line(spec: dict[str, Any]) -> str:
    """The stored spec in one line: what is trained and how the study searches."""
    what = f"task {spec['task']}" if spec.get("task") else f"objective {spec.get('objective') or '?'}"
    args = spec.get("task_args") or {}
    if args:
        what += " (" + ", ".join(f"{k} {_fmt(v)}" for k, v in args.items()) + ")"
    parts = [what] + [f"{key.replace('_', ' ')} {_fmt(spec[key])}" for key in
                      ("n_trials", "concurrency", "sampler", "pruner", "seed") if spec.get(key) is not None]
    return ", ".join(parts)


@main.command()
@click.argument("study")
@click.option("--storage", help=_STORAGE_HELP)
@click.option("--json", "as_json", is_flag=True)
@_guard
def best(study: str, storage: str | None, as_json: bool) -> None:
    """Print the best trial's parameters and metrics (the Pareto front when several objectives)."""
    from tuner._api import best_trial
    from tuner.engine._progress import goal_text

    b = best_trial(study, storage)
    if as_json:
        _echo_json(b)
        return
    front = b.get("pareto_front")
    if front:
        click.echo(f"pareto front of {len(front)} trial{'s' if len(front) != 1 else ''} "
                   f"({goal_text(b['objectives'], b['directions'])}):")
    for row in front or [b]:
        click.echo(f"trial {row['number']}: {_named_values(b['objectives'], row['values'])}")
        params = row.get("params_user") or row["params"]
        for k, v in params.items():
            click.echo(f"  {k}: {_fmt_param(v)}")
        for k, v in sorted((row.get("metrics") or {}).items()):
            click.echo(f"  [{k}] {_fmt(v)}")


@main.command()
@click.argument("study")
@click.option("--storage", help=_STORAGE_HELP)
@click.option("--interval", default=2.0, show_default=True, type=float, help="Seconds between looks at the storage.")
@click.option("--wait", is_flag=True, help="Wait for the study to be created and a run of it to start.")
@_guard
def watch(study: str, storage: str | None, interval: float, wait: bool) -> None:
    """Follow STUDY, run by another process (a tmux pane, a scheduler, a cluster's head node),
    trial by trial until that run ends. Exit 0: the study reached n_trials; 3: it stopped on too
    many failures; 1: it stopped short (interrupted, timeout, its driver lost)."""
    from tuner._watch import watch as _watch
    from tuner.engine._progress import Progress

    try:
        summary = _watch(study, storage, interval=interval, wait=wait, progress=Progress(stream=sys.stdout))
    except KeyboardInterrupt:  # the watch stops; the run it follows goes on
        if sys.stdout.isatty():
            click.echo("")  # past the status line
        sys.exit(130)
    sys.exit({"finished": 0, "failed": 3}.get(summary.state, 1))


#: The longest ``tuner stop --timeout``: a day (a run ends its trials within seconds of the request).
_MAX_STOP_WAIT_S = 86_400.0


@main.command()
@click.argument("study")
@click.option("--storage", help=_STORAGE_HELP)
@click.option("--no-wait", is_flag=True, help="Return once the run is asked, without waiting for it to stop.")
@click.option("--timeout", "wait_s", default=120.0, show_default=True, type=float,
              help="Seconds to wait for the run to stop.")
@_guard
def stop(study: str, storage: str | None, no_wait: bool, wait_s: float) -> None:
    """Ask the run of STUDY (in another terminal, or on another machine sharing the storage) to
    stop as at a Ctrl-C: its running trials are ended, and running its spec again resumes."""
    import time

    from tuner._api import load_study
    from tuner._watch import _logged_run, _run_text
    from tuner.engine import _attrs
    from tuner.engine._study import _lease_alive, _names_run, request_stop
    from tuner.storage import open_storage

    if not 0 <= wait_s <= _MAX_STOP_WAIT_S:  # before asking: NaN and -1 used to wait not at all, after the request
        raise UserInputError(f"--timeout {wait_s:g}: the seconds to wait for the run to stop must be from 0 to "
                             f"{_MAX_STOP_WAIT_S:g} (a day); e.g. --timeout 120, or --no-wait not to wait")
    load_study(study, storage)  # read-only first: a missing study or database is one line, and nothing is created
    st = open_storage(storage)
    lease = request_stop(st, study)
    if lease is None:
        click.echo(f"study {study!r} is not running: nothing to stop")
        return
    click.echo(f"asked the run of study {study!r} (pid {lease.get('pid')} on {lease.get('host')}) to stop; "
               f"it ends its running trials within a few seconds")
    if no_wait:
        return
    study_id = st.get_study_id_from_name(study)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        attrs = st.get_study_system_attrs(study_id)
        held = attrs.get(_attrs.DRIVER)
        if not (_lease_alive(held) and _names_run(held, lease)):
            # how it ended, from the entry it logged as it gave the study up
            run = _logged_run(attrs, lease)
            click.echo(f"the run has stopped{_run_text(run, False)}; run its spec again to resume")
            if _lease_alive(held):  # a run started meanwhile (a scheduler's restart): not the one asked
                click.echo(f"another run holds study {study!r} now (pid {held.get('pid')} on {held.get('host')}); "
                           f"`tuner stop {shlex.quote(study)}` stops that one")
            return
        time.sleep(0.5)
    _fail(f"the run of study {study!r} has not stopped within {wait_s:g}s; it is still ending its trials "
          f"(or does not reach the storage): `tuner watch {study}` follows it", code=1)


def _interactive() -> bool:
    """Whether someone at a terminal can answer a question (a script or a pipe cannot)."""
    return sys.stdin.isatty()


@main.command("rm")
@click.argument("study")
@click.option("--storage", help=_STORAGE_HELP)
@click.option("--artifacts", is_flag=True, help="Also delete the folders its trials wrote in (checkpoints, files).")
@click.option("--yes", "-y", is_flag=True, help="Delete without asking.")
@_guard
def rm(study: str, storage: str | None, artifacts: bool, yes: bool) -> None:
    """Delete STUDY and its trials (refused while a run holds it)."""
    from tuner._api import delete_study, load_study
    from tuner.engine._study import _trials_text

    if not yes:
        loaded = load_study(study, storage)
        what = _trials_text(loaded._storage, loaded._study_id) + (", and their folders" if artifacts else "")
        if not _interactive():
            raise UserInputError(f"tuner rm {study}: this deletes {what}; pass --yes to delete without asking")
        if not click.confirm(f"delete study {study!r} ({what})?", default=False):
            _fail("nothing deleted", code=1)
    from tuner._api import _is_trial_folder

    done = delete_study(study, storage, artifacts=artifacts)
    click.echo(f"deleted study {study!r} ({done['trials']})")
    if done["folders_removed"]:
        click.echo(f"removed {len(done['folders_removed'])} trial folder(s) in {_common(done['folders_removed'])}")
    own = [f for f in done["folders_kept"] if _is_trial_folder(Path(f), study)]
    if own:  # left by choice (no --artifacts), or one that could not be removed
        click.echo(f"kept {len(own)} trial folder(s) in {_common(own)}"
                   + ("" if artifacts else "; --artifacts removes them"))
    if others := [f for f in done["folders_kept"] if f not in own]:
        click.echo(f"kept {len(others)} folder(s) its trials recorded outside tuner's artifacts layout "
                   f"(in {_common(others)}): tuner removes only folders it made")


def _common(folders: list[str]) -> str:
    return os.path.commonpath(folders) if len(folders) > 1 else str(Path(folders[0]).parent)


@main.command("report")
@click.argument("study")
@click.option("-o", "--output", default="report.html", show_default=True, type=click.Path(dir_okay=False),
              help="The HTML file to write (one file; it opens offline).")
@click.option("--storage", help=_STORAGE_HELP)
@click.option("--top", default=10, show_default=True, help="How many of the best trials to list.")
@_guard
def report(study: str, output: str, storage: str | None, top: int) -> None:
    """Write an HTML report of STUDY: summary, figures, top trials and search-space advice."""
    from tuner.report import write_report

    if top < 0:
        raise UserInputError("--top must be >= 0")
    path = write_report(study, output, storage, top=top)
    click.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); open it in a browser")


@main.command("export")
@click.argument("study")
@click.option("-o", "--output", required=True, type=click.Path(), help="Folder to write the export into.")
@click.option("--trial", type=int, help="Trial number (default: the best; required with several objectives).")
@click.option("--format", "formats", help="Comma-separated: torchscript,onnx,state_dict,exported_program (torch tasks; "
                                          "default all) or sklearn.")
@click.option("--tolerance", default=1e-4, show_default=True,
              help="Largest output difference allowed vs the trial's model (>= 0); regression adds 1e-5 "
                   "of the largest output's magnitude.")
@click.option("--quantize", type=click.Choice(["int8"]), help="Also write an int8 dynamically quantized TorchScript.")
@click.option("--retrain", is_flag=True, help="Train the configuration again on train+validation (its best epoch count) first.")
@click.option("--storage", help=_STORAGE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the model card as JSON.")
@_guard
def export_cmd(study: str, output: str, trial: int | None, formats: str | None, tolerance: float, quantize: str | None,
               retrain: bool, storage: str | None, as_json: bool) -> None:
    """Export a trial's model, check it reproduces the trial, and write a model card."""
    from tuner.export import export

    chosen = [f.strip() for f in formats.split(",") if f.strip()] if formats else None
    result = export(study, output, trial=trial, formats=chosen, storage=storage, tolerance=tolerance, quantize=quantize,
                    retrain=retrain)
    if as_json:
        _echo_json(result.card)
        return
    retrained = result.card.get("retrained")
    if retrained and "epochs" in retrained:
        key = next(k for k in retrained if k.startswith("test_"))
        click.echo(f"retrained trial {result.trial}'s configuration on {retrained['train_samples']} train+validation "
                   f"samples for {retrained['epochs']} epochs: {key} {retrained[key]:.4f} "
                   f"(the trial: {retrained['trial_' + key]:.4f})")
    elif retrained:
        click.echo(retrained["note"])
    click.echo(f"exported trial {result.trial} of {result.study} to {result.folder}/")
    # what each file was compared with: a scikit-learn export has no PyTorch model behind it, and a
    # retrained export is held to the retrained model's score, not to what the trial recorded
    against = "the trial's model" if result.card.get("kind") == "sklearn" else "PyTorch"
    expected = "retrained model" if retrained and "epochs" in retrained else "recorded"
    for name, path in result.files.items():
        check = result.checks[name]
        score = ", ".join(f"{k} {v:+.4f}" if k.endswith("_change") else f"{k} {v:.4f}"
                          for k, v in check.items() if k.startswith("test_"))
        size = f"; {check['size_ratio']:.2f}x the fp32 size" if "size_ratio" in check else ""
        click.echo(f"  {name:<16} {path.name:<26} max |diff| vs {against} {check['max_abs_diff']:.2g}; {score} "
                   f"({expected} {', '.join(f'{v:.4f}' for v in result.card['recorded_test'].values())}){size}")
    click.echo("  model_card.md, model_card.json")


@main.command("predict")
@click.argument("export_dir", type=click.Path())
@click.argument("inputs", type=click.Path())
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here (.csv or .json); default: CSV on stdout.")
@click.option("--proba", is_flag=True, help="Add one probability column per class (classification).")
@click.option("--format", "model_format", help="Which exported file to run (default: torchscript, else state_dict, onnx, "
                                               "exported_program).")
@_guard
def predict_cmd(export_dir: str, inputs: str, output: str | None, proba: bool, model_format: str | None) -> None:
    """Predict with an export: INPUTS is a .npy, .npz or .csv of raw features (one row or array per sample);
    for a text model, a .csv with a text column or a .txt with one sentence per line."""
    import csv
    import io
    from pathlib import Path

    from tuner.export import load, read_inputs, read_texts

    if output:  # checked first: predictions written into the export would replace its files, card included
        target, folder = Path(output).resolve(), Path(export_dir).resolve()
        if target == folder or folder in target.parents:
            raise UserInputError(f"-o {output}: inside the export folder {export_dir}; write the predictions elsewhere")
        if target.suffix.lower() not in (".csv", ".json"):  # anything else was written as CSV without a word
            raise UserInputError(f"-o {output}: predictions are written as CSV or JSON, chosen by the extension; "
                                 f"name the file e.g. {target.stem}.csv or {target.stem}.json")
        if not target.parent.is_dir():
            raise UserInputError(f"-o {output}: no such folder {target.parent}")
    predictor = load(export_dir, format=model_format)
    if predictor.kind == "text":
        X: Any = read_texts(inputs, column=(predictor.card.get("data", {}).get("task_args") or {}).get("text")
                            if str(inputs).lower().endswith(".csv") else None)
    else:
        X = read_inputs(inputs, n_features=predictor.n_features, feature_names=predictor.feature_names,
                        label_column=predictor.label_column)
    predictions = predictor.predict(X)
    probabilities = predictor.predict_proba(X) if proba else None
    names = [str(c) for c in (predictor.class_names or range(probabilities.shape[1] if probabilities is not None else 0))]
    rows = []
    for i, p in enumerate(predictions):
        row: dict[str, Any] = {"prediction": p.item() if hasattr(p, "item") else p}
        if probabilities is not None:
            row.update({f"p_{n}": float(v) for n, v in zip(names, probabilities[i])})
        rows.append(row)
    if output and output.lower().endswith(".json"):
        text = json.dumps(rows, indent=1) + "\n"
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["prediction"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    if not output:
        click.echo(text, nl=False)
        return
    try:
        Path(output).write_text(text)
    except OSError as exc:
        raise UserInputError(f"-o {output}: cannot write it ({exc.strerror or exc})") from None
    click.echo(f"wrote {len(rows)} predictions to {output}", err=True)


@main.command("dashboard")
@click.option("--storage", help=_STORAGE_HELP)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but a loopback address exposes every study (use --token).")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: a free one, printed).")
@click.option("--token", envvar="TUNER_DASHBOARD_TOKEN", show_envvar=True,
              help="Require this token on every request (header 'Authorization: Bearer TOKEN', or ?token= once in a browser).")
@_guard
def dashboard(storage: str | None, host: str, port: int, token: str | None) -> None:
    """Serve a read-only web dashboard of the storage's studies (Ctrl-C stops it)."""
    import socket

    from tuner.dashboard import serve
    from tuner.storage import open_storage, redact, resolve_url

    url = resolve_url(storage)
    open_storage(url, readonly=True)  # a wrong URL or a missing database is a one-line error before serving
    try:  # a taken port is a user mistake, not a traceback from inside uvicorn
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
            # --port 0: a free port, the one printed and served (it printed :0 and served elsewhere)
            port = probe.getsockname()[1]
    except OSError as exc:
        raise UserInputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; pass another --port or --host") from None
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"tuner dashboard on http://{shown}:{port}/ over {redact(url)}"
               + (" (token required)" if token else "") + "; Ctrl-C stops it", err=True)
    serve(url, host=host, port=port, token=token)


if __name__ == "__main__":  # pragma: no cover
    main()
