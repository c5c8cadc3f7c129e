"""The HTML report end to end on SQLite studies: self-contained, every section, escaping, edge cases."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from tests.report._helpers import make_trial, random_trials, sqlite_study
from tuner.engine import _attrs
from tuner.report import build_report, write_report

EVIL = "<script>alert(1)</script>"
SPACE = {"x": FloatDistribution(0.0, 10.0), "lr": FloatDistribution(1e-5, 1e-1, log=True),
         "n": IntDistribution(1, 4), "opt": CategoricalDistribution(["adam", "sgd", EVIL])}
FIGURES = ["history", "importance", "parallel", "slice", "contour", "curves", "timeline", "edf"]


def _objective(p):
    return (p["x"] - 3.0) ** 2 + 2.0 * (math.log10(0.1) - math.log10(p["lr"])) + 5.0 * (p["opt"] == "sgd")


def _figures(html: str) -> dict[str, dict]:
    blocks = re.findall(r'<script type="application/json" data-fig="fig-([a-z]+)">(.*?)</script>', html, flags=re.S)
    return {name: json.loads(text) for name, text in blocks}


def _section(html: str, sid: str) -> str:
    m = re.search(rf'<section id="{sid}">(.*?)</section>', html, flags=re.S)
    assert m, f"section {sid} missing"
    return m.group(1)


def _study(tmp_path: Path, n: int = 60, **kw) -> tuple[str, list]:
    workers = [{"host": "n1", "pid": 10 + i, "gpu_ids": [str(i)], "gpus": 1} for i in range(2)]
    trials = random_trials(n, SPACE, _objective, seed=0)
    for t in trials:
        t.system_attrs[_attrs.WORKER] = workers[t.number % 2]
        t.intermediate_values = {s: t.values[0] + 1.0 / s for s in range(1, 4)}
    return sqlite_study(tmp_path / "r.db", trials, **kw), trials


def test_report_is_self_contained_with_every_section(tmp_path: Path) -> None:
    from plotly.offline import get_plotlyjs

    url, trials = _study(tmp_path)
    out = write_report("s", tmp_path / "out" / "report.html", storage=url)
    html = out.read_text(encoding="utf-8")
    assert html.count(get_plotlyjs()) == 1
    assert not re.search(r"<script[^>]*\bsrc=", html) and not re.search(r"<link[^>]*\bhref=", html)
    for sid in ["summary", "advice", "top"] + FIGURES:
        _section(html, sid)
    figs = _figures(html)
    assert sorted(figs) == sorted(FIGURES) and all(f["data"] for f in figs.values())
    assert 'id="pareto"' not in html
    best = min(trials, key=lambda t: t.values[0])
    assert f"(trial {best.number})" in _section(html, "summary")


def test_summary_says_where_the_trials_time_went_when_trials_recorded_it(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    url, _ = _study(tmp_path / "plain")
    assert "time in trials" not in _section(build_report(optuna.load_study(study_name="s", storage=url)), "summary")  # nothing recorded: no row

    trials = random_trials(12, SPACE, _objective, seed=0)
    for t in trials:
        t0 = t.datetime_start.timestamp()
        # 1 s to pick up and sample, 2 s of setup, 6 s of training, 1 s of wrap-up: 10 s in all
        t.system_attrs[_attrs.TIMING] = {"process_trial": 2, "picked_up": t0 + 0.5, "asked": t0 + 1.0,
                                         "training_started": t0 + 3.0, "training_ended": t0 + 9.0, "finished": t0 + 10.0}
    url = sqlite_study(tmp_path / "timed.db", trials)
    summary = _section(build_report(optuna.load_study(study_name="s", storage=url)), "summary")
    row = re.search(r"<th>time in trials</th><td>(.*?)</td>", summary)
    assert row, summary
    assert row.group(1).startswith("training 60%, setup 20%, wrap-up 10%")
    assert "over 12 trials" in row.group(1)


def test_summary_lists_the_runs_and_the_trials_a_run_ended_apart_from_the_failures(tmp_path: Path) -> None:
    from tuner.engine._study import record_run

    trials = random_trials(10, SPACE, _objective, seed=0)
    trials.append(make_trial(10, {"x": 1.0}, SPACE, None, TrialState.FAIL, system_attrs={
        _attrs.ERROR: {"type": "Interrupted", "message": "the run was interrupted before this trial finished",
                       "traceback": ""}}))
    trials.append(make_trial(11, {"x": 2.0}, SPACE, None, TrialState.FAIL, system_attrs={
        _attrs.ERROR: {"type": "ValueError", "message": "boom", "traceback": "Traceback ..."}}))
    url = sqlite_study(tmp_path / "runs.db", trials)
    study = optuna.load_study(study_name="s", storage=url)
    record_run(study, {"started": 1_000.0, "ended": 1_090.0, "host": "n1", "pid": 7, "end": "interrupted",
                       "complete": 6, "pruned": 0, "failed": 1, "stopped_unfinished": 1})
    record_run(study, {"started": 1_500.0, "ended": 1_560.0, "host": "n1", "pid": 9, "end": "stop_requested",
                       "complete": 0, "pruned": 0, "failed": 0, "stopped_unfinished": 0})
    record_run(study, {"started": 2_000.0, "ended": 2_030.0, "host": "n1", "pid": 8, "end": "done",
                       "complete": 4, "pruned": 0, "failed": 0, "stopped_unfinished": 0})
    summary = _section(build_report(study), "summary")
    assert re.search(r"<th>ended unfinished</th><td>1 trial\(s\) a Ctrl-C, a stop or a lost run ended .*?; 10\)</td>",
                     summary), summary
    assert "<th>runs</th><td>3: interrupted 1, stopped by tuner stop 1, done 1 (listed below)</td>" in summary
    # the counts line too: "fail 2" read as two broken trials
    assert re.search(r"<th>trials</th><td>12: complete \d+, (pruned \d+, )?fail 1, stopped 1[ <]", summary), summary
    failures = re.search(r"<h3>Failures</h3>(.*?)</table>", summary, flags=re.S).group(1)
    assert "ValueError: boom" in failures and "Interrupted" not in failures
    runs = summary[summary.index("<summary>Runs, newest first</summary>"):]
    rows = re.findall(r"<tr><td>[^<]*</td><td class=num>([^<]*)</td><td>([^<]*)</td>", runs)
    assert rows == [("30.0 s", "done"), ("1.0 min", "stopped by tuner stop"), ("1.5 min", "interrupted")]  # newest first


def test_top_table_rows_are_sorted_best_first(tmp_path: Path) -> None:
    url, trials = _study(tmp_path)
    html = build_report(optuna.load_study(study_name="s", storage=url), top=10)
    rows = re.findall(r'<tr class="trial"><td class=num>(\d+)</td><td class=num>(\d+)</td>', _section(html, "top"))
    expected = [t.number for t in sorted(trials, key=lambda t: (t.values[0], t.number))[:10]]
    assert [int(n) for _, n in rows] == expected and [int(r) for r, _ in rows] == list(range(1, 11))


def test_user_strings_are_escaped_everywhere(tmp_path: Path) -> None:
    trials = random_trials(30, SPACE, _objective, seed=1)
    evil_param = {EVIL: FloatDistribution(0.0, 1.0)}
    trials.append(make_trial(30, {EVIL: 0.5, "opt": EVIL}, {**evil_param, **SPACE}, [-1.0]))  # the best trial
    trials.append(make_trial(31, {"x": 1.0}, SPACE, None, TrialState.FAIL,
                             system_attrs={_attrs.ERROR: {"type": "ValueError", "message": EVIL, "traceback": EVIL}}))
    url = sqlite_study(tmp_path / "e.db", trials, name=EVIL, metrics=[EVIL],
                       spec={"name": EVIL, "task_args": {"path": EVIL}, "n_trials": 5})
    html = write_report(EVIL, tmp_path / "e.html", storage=url).read_text(encoding="utf-8")
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "\\u003cscript\\u003ealert(1)" in html  # inside figure JSON
    assert html.count("<script") == len(_figures(html)) + 2  # plotly.js, the figures, the boot script
    _figures(html)  # still valid JSON


def test_multi_objective_study_gets_a_pareto_section(tmp_path: Path) -> None:
    trials = random_trials(40, SPACE, lambda p: ((p["x"] - 3) ** 2, abs(p["x"] - 7) + p["n"]), seed=2)
    url = sqlite_study(tmp_path / "m.db", trials, directions=["minimize", "minimize"], metrics=["loss", "size"])
    html = write_report("s", tmp_path / "m.html", storage=url).read_text(encoding="utf-8")
    figs = _figures(html)
    assert "pareto" in figs and figs["pareto"]["data"]
    assert "Pareto front" in _section(html, "top") and "Pareto front" in _section(html, "summary")


@pytest.mark.parametrize("kind", ["empty", "no-complete"])
def test_study_without_complete_trials_still_renders(tmp_path: Path, kind: str) -> None:
    trials = [] if kind == "empty" else [
        make_trial(0, {"x": 1.0}, SPACE, None, TrialState.FAIL,
                   system_attrs={_attrs.ERROR: {"type": "RuntimeError", "message": "boom", "traceback": ""}}),
        make_trial(1, {"x": 2.0}, SPACE, None, TrialState.RUNNING)]
    url = sqlite_study(tmp_path / "x.db", trials)
    html = write_report("s", tmp_path / "x.html", storage=url).read_text(encoding="utf-8")
    assert "No complete trial yet" in _section(html, "summary")
    for sid in ("history", "importance", "parallel", "slice", "contour", "edf"):
        assert 'class="note"' in _section(html, sid)
    if kind == "no-complete":
        assert "RuntimeError: boom" in _section(html, "summary")
        assert "timeline" in _figures(html)
    advice = _section(html, "advice")
    assert "Judged on" not in advice and "0 complete trial(s): advice needs at least 20" in advice  # not "the best 5 of 0"


def test_importances_from_few_trials_say_they_are_rough(tmp_path: Path) -> None:
    (tmp_path / "few").mkdir(), (tmp_path / "many").mkdir()
    few = write_report("s", tmp_path / "few.html", storage=_study(tmp_path / "few", n=6)[0]).read_text(encoding="utf-8")
    assert "Only 6 complete trials: these importances are rough" in _section(few, "importance")
    assert "Judged on" not in _section(few, "advice")
    many = write_report("s", tmp_path / "many.html", storage=_study(tmp_path / "many", n=60)[0]).read_text(encoding="utf-8")
    assert "rough" not in _section(many, "importance") and "Judged on the best 6 of 60" in _section(many, "advice")


def test_large_study_is_thinned_and_says_so(tmp_path: Path) -> None:
    from tuner.report import Limits, StudyData, compute_report

    trials = random_trials(400, SPACE, _objective, seed=3)
    data = StudyData(name="big", directions=["minimize"], metric_names=["value"], trials=trials)
    report = compute_report(data, limits=Limits(max_points=100, max_slice_points=100, max_lines=100,
                                                max_contour_points=50, max_importance_trials=150))
    captions = {s.id: " ".join(s.captions) for s in report.sections}
    assert "Showing 100 of 400" in captions["history"] and "Showing 100 of 400" in captions["slice"]
    assert "sample of 150 of 400" in captions["importance"] and report.importance.n_used == 150
    assert all(s.figure is not None for s in report.sections if s.id != "curves")


def test_variant_params_are_shown_with_their_condition_not_optunas_syntax(tmp_path: Path) -> None:
    """A param with one range per optimizer is two Optuna params, ``lr|opt=adam`` and
    ``lr|opt=sgd``; every axis, table and advice of the report named them so."""
    from tuner import storage as st
    from tuner.space import SearchSpace

    space = SearchSpace.from_mapping({"params": {
        "opt": {"choice": ["adam", "sgd"]}, "n": {"int": [1, 2]},
        "lr": [{"float": [1e-4, 1e-2], "log": True, "when": {"opt": "adam"}},
               {"float": [1e-3, 1e-1], "log": True, "when": {"opt": "sgd"}}],
        "drop": [{"float": [0.0, 0.5], "per": "n", "when": {"opt": "sgd"}},
                 {"float": [0.1, 0.2], "per": "n", "when": {"opt": "adam"}}]}}, source="<test>")
    url = f"sqlite:///{tmp_path / 'v.db'}"
    study = optuna.create_study(study_name="v", storage=st.open_storage(url),
                                sampler=optuna.samplers.RandomSampler(seed=1))
    study._storage.set_study_system_attr(study._study_id, _attrs.SPACE, space.to_dict())
    for _ in range(40):
        trial = study.ask()
        p = space.suggest(trial)
        study.tell(trial, p["lr"] * (10 if p["opt"] == "sgd" else 1) + sum(p.get("drop", [])))
    assert {"lr|opt=adam", "lr|opt=sgd", "drop|opt=sgd.0"} <= {k for t in study.trials for k in t.params}
    html = write_report("v", tmp_path / "v.html", storage=url).read_text(encoding="utf-8")
    assert "lr|opt" not in html and "drop|opt" not in html
    parallel = {d["label"] for d in _figures(html)["parallel"]["data"][0]["dimensions"]}
    assert {"lr (opt=adam) (log)", "lr (opt=sgd) (log)", "drop.0 (opt=sgd)", "drop.1 (opt=adam)"} <= parallel, parallel
    assert "lr (opt=sgd)" in _section(html, "top")


def test_display_names_come_from_the_space_not_from_parsing_the_name() -> None:
    from tuner.space import SearchSpace

    space = SearchSpace.from_mapping({"params": {
        "k": {"choice": [1, 1.5]}, "n": {"int": [1, 2]},
        "a": [{"float": [0, 1], "when": {"k": 1}}, {"float": [1, 2], "when": {"k": 1.5}}],
        "w": {"int": [1, 8], "per": "n"}}}, source="<test>")
    assert space.display_names(["a|k=1", "a|k=1.5", "w.0", "k", "gone|x=1"]) == {
        "a|k=1": "a (k=1)", "a|k=1.5": "a (k=1.5)", "w.0": "w.0", "k": "k", "gone|x=1": "gone|x=1"}


def test_the_slices_label_a_string_choice_as_itself_not_its_repr(tmp_path: Path) -> None:
    """Optuna's slice plot labels categories by repr: 'adam' with its quotes, beside None and 1.0."""
    url, _ = _study(tmp_path)
    figure = _figures(write_report("s", tmp_path / "s.html", storage=url).read_text(encoding="utf-8"))["slice"]
    labels = {x for trace in figure["data"] for x in (trace.get("x") or []) if isinstance(x, str)}
    labels |= {x for key, axis in figure["layout"].items() if key.startswith("xaxis")
               for x in (axis.get("categoryarray") or [])}
    assert {"adam", "sgd"} <= labels and not any(x.startswith("'") for x in labels), labels


def test_best_parameters_are_listed_as_the_objective_saw_them(tmp_path: Path) -> None:
    """The table listed the report's axis names (`lr (optimizer=adam)`, `width.0`) without the
    fixed values, where `tuner best` lists `lr`, `width: [...]` and `epochs`."""
    from tuner.space import SearchSpace

    space = SearchSpace.from_mapping({"params": {
        "optimizer": {"choice": ["sgd", "adam"]},
        "lr": [{"float": [0.01, 1.0], "when": {"optimizer": "sgd"}}, {"float": [1e-4, 1e-2], "when": {"optimizer": "adam"}}],
        "n": {"int": [2, 2]}, "width": {"int": [4, 64], "per": "n"}, "epochs": 3}}, source="t")
    url = f"sqlite:///{tmp_path / 'u.db'}"
    study = optuna.create_study(study_name="u", storage=url, sampler=optuna.samplers.RandomSampler(seed=1))
    study._storage.set_study_system_attr(study._study_id, _attrs.SPACE, space.to_dict())
    study.optimize(lambda t: float(sum(space.suggest(t)["width"])), n_trials=6)
    seen = space.params_from_optuna(study.best_trial.params)
    html = write_report("u", tmp_path / "u.html", storage=url).read_text(encoding="utf-8")
    best = re.search(r"<h3>Best parameters</h3><table>(.*?)</table>", html, re.S).group(1)  # type: ignore[union-attr]
    shown = dict(re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td></tr>", best))
    assert set(shown) == {"optimizer", "lr", "n", "width", "epochs"}, shown
    assert shown["width"] == f"[{seen['width'][0]}, {seen['width'][1]}]" and shown["epochs"] == "3"
