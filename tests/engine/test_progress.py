"""The run's progress display: a live status line in a terminal, log lines otherwise."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

from tuner.engine._progress import Progress, format_summary


def _state(**kw: object) -> SimpleNamespace:
    base = dict(finished=3, target=10, running={"a": 1, "b": 2}, complete=2, pruned=1, failed=0)
    base.update(kw)
    base.setdefault("started", set(base["running"]))  # every trial handed to Tune has started
    return SimpleNamespace(**base)


def test_plain_mode_prints_one_line_per_trial() -> None:
    out = io.StringIO()
    p = Progress(stream=out, live=False)
    p._maximize = [True]
    p.trial_done(4, "COMPLETE", [0.5], _state())
    p.trial_done(5, "COMPLETE", [0.7], _state(finished=4))
    p.trial_done(6, "PRUNED", None, _state(finished=5), pruned_at={"step": 4, "value": 0.25})
    p.trial_done(7, "PRUNED", None, _state(finished=6), pruned_at={"step": None, "value": None})  # raised before reporting
    p.trial_done(8, "PRUNED", None, _state(finished=7), pruned_at={"step": 0, "value": float("nan")})  # diverged
    lines = out.getvalue().splitlines()
    assert len(lines) == 5
    assert lines[0].startswith("trial 4 complete value=0.5 |") and "finished 3/10" in lines[0]
    assert "best 0.7" in lines[2] and lines[2].startswith("trial 6 pruned at step 4 value=0.25 |")
    assert lines[3].startswith("trial 7 pruned |") and lines[4].startswith("trial 8 pruned at step 0 value=nan |")
    assert "\r" not in out.getvalue()


def test_several_objectives_count_the_pareto_front_not_a_list_of_values() -> None:
    """The status line said `best -` all run long and the final line printed every front member's
    values as one nested list; now both give the front's size, kept up to date trial by trial."""
    out = io.StringIO()
    p = Progress(stream=out, live=False)
    p._maximize = [True, False]  # maximize accuracy, minimize size
    for number, values in enumerate([[0.9, 100.0], [0.8, 200.0], [0.95, 300.0], [0.9, 50.0], [0.9, 50.0]]):
        p.trial_done(number, "COMPLETE", values, _state())
    p.trial_done(5, "PRUNED", None, _state())
    lines = out.getvalue().splitlines()
    # 1: dominated by 0, not on the front; 3 dominates 0 and replaces it; 4 equals 3: both kept, as Optuna keeps them
    fronts = [line.rsplit("  ", 1)[1] for line in lines]
    assert fronts == ["pareto front 1", "pareto front 1", "pareto front 2", "pareto front 2", "pareto front 3",
                      "pareto front 3"]
    assert lines[2].startswith("trial 2 complete value=[0.95, 300] |")
    summary = SimpleNamespace(best_value=[[0.95, 300.0], [0.9, 50.0], [0.9, 50.0]], stopped_reason=None,
                              study_name="mo", finished_total=6, n_trials=6, complete=5, pruned=1, failed=0,
                              elapsed_s=3.0)
    assert format_summary(summary).endswith("; pareto front of 3 trials (tuner best mo lists them)")
    assert format_summary(SimpleNamespace(**{**summary.__dict__, "best_value": [[0.9, 50.0]]})).endswith(
        "; pareto front of 1 trial (tuner best mo lists them)")
    assert format_summary(SimpleNamespace(**{**summary.__dict__, "best_value": None})).endswith("; best -")


def test_a_resumed_run_counts_the_front_the_study_already_has(monkeypatch: pytest.MonkeyPatch) -> None:
    optuna = pytest.importorskip("optuna")
    from tuner.engine import _progress

    monkeypatch.setattr(_progress, "plugins_text", lambda spec: "sampler nsga2, pruner none")
    study = optuna.create_study(directions=["maximize", "minimize"])
    for values in ([0.9, 100.0], [0.8, 200.0], [0.95, 300.0]):
        study.tell(study.ask(), values)
    spec = SimpleNamespace(name="mo", n_trials=10, concurrency=1, directions=["maximize", "minimize"],
                           metrics=("val_accuracy", "n_params"))
    out = io.StringIO()
    p = Progress(stream=out, live=False)
    p.start(spec, SimpleNamespace(resumed=True, recovered=[], finished_before=3, storage_url="sqlite:///x.db"),
            SimpleNamespace(study=study))  # type: ignore[arg-type]
    assert out.getvalue().startswith("resuming study 'mo' (maximize val_accuracy, minimize n_params) in sqlite:///x.db")
    p.trial_done(3, "COMPLETE", [0.99, 10.0], _state())  # dominates all three
    assert out.getvalue().splitlines()[-1].endswith("  pareto front 1")


def test_live_mode_rewrites_one_status_line() -> None:
    out = io.StringIO()
    p = Progress(stream=out, live=True)
    p.trial_done(1, "COMPLETE", [2.0], _state())
    p.tick(_state())
    p.note("a note")
    text = out.getvalue()
    assert text.count("\r\033[K") >= 2 and "running 2" in text and "best 2" in text
    assert text.endswith("a note\n")  # notes clear the status line first


def test_quiet_prints_nothing() -> None:
    out = io.StringIO()
    p = Progress(stream=out, quiet=True)
    p.trial_done(1, "COMPLETE", [2.0], _state())
    p.note("x")
    p.end(SimpleNamespace(best_value=1.0, stopped_reason=None, study_name="s", finished_total=10, n_trials=10,
                          complete=10, pruned=0, failed=0, elapsed_s=1.0))
    assert out.getvalue() == ""


def test_summary_says_how_to_resume() -> None:
    s = SimpleNamespace(best_value=0.25, stopped_reason="interrupted", study_name="s", finished_total=4, n_trials=10,
                        complete=3, pruned=1, failed=2, elapsed_s=12.34)
    line = format_summary(s)
    assert line.startswith("interrupted: study 's' has 4/10 finished trials")
    assert "3 complete, 1 pruned, 2 failed" in line and "run the same command again to resume" in line
    assert "resume" not in format_summary(SimpleNamespace(**{**s.__dict__, "stopped_reason": None, "finished_total": 10}))


def test_trials_waiting_for_a_free_slot_are_queued_not_running() -> None:
    """concurrency 4 on 2 CPUs: Tune holds 3 unfinished trials, 2 of them started; the line said
    `running 3`. Running counts the started ones only."""
    p = Progress(stream=io.StringIO(), live=False)
    held = {"a": (1, 1), "b": (2, 2), "c": (3, 3)}
    assert "finished 1/4  running 2, queued 1  complete" in p._status(_state(finished=1, target=4, running=held,
                                                                                started={"a", "b"}))
    assert "running 0, queued 3  " in p._status(_state(running=held, started=set()))
    line = p._status(_state(running=held, started={"a", "b", "c", "gone"}))  # a finished trial is not counted
    assert "running 3  complete" in line and "queued" not in line


def test_the_recorder_marks_a_trial_started_when_tune_starts_it_and_forgets_it_when_it_ends() -> None:
    pytest.importorskip("ray.tune")
    from optuna.trial import TrialState

    from tuner.engine._tune_glue import Recorder

    state = _state(running={"a": (1, 1), "b": (2, 2)}, started=set(), grid=None,
                   retention=SimpleNamespace(trial_finished=lambda *a: None),
                   spec=SimpleNamespace(max_failures=10), stop_reason=None)
    state.count = lambda st: None
    out = io.StringIO()
    recorder = Recorder(state, Progress(stream=out, live=False))  # type: ignore[arg-type]
    recorder.on_trial_start(0, [], SimpleNamespace(trial_id="a"))
    recorder.on_trial_start(0, [], SimpleNamespace(trial_id="zz"))  # not this run's: ignored
    assert state.started == {"a"}
    recorder._finish(SimpleNamespace(trial_id="a"), TrialState.COMPLETE, [1.0], None)
    assert state.started == set() and "running 0, queued 1" in out.getvalue()


def test_the_first_line_names_the_storage_with_its_password_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    optuna = pytest.importorskip("optuna")
    from tuner.engine import _progress

    monkeypatch.setattr(_progress, "plugins_text", lambda spec: "sampler random, pruner none")
    out = io.StringIO()
    spec = SimpleNamespace(name="quickstart", n_trials=30, concurrency=2, directions=["maximize"])
    summary = SimpleNamespace(resumed=False, recovered=[], finished_before=0,
                              storage_url="postgresql+psycopg://tuner:s3cret@db.example:5432/studies")
    state = SimpleNamespace(study=optuna.create_study(direction="maximize"))
    Progress(stream=out, live=False).start(spec, summary, state)  # type: ignore[arg-type]
    first = out.getvalue().splitlines()[0]
    assert first.startswith("starting study 'quickstart' (maximize value) in "
                            "postgresql+psycopg://tuner:***@db.example:5432/studies: "
                            "0/30 trials finished"), first
    assert "s3cret" not in out.getvalue()
