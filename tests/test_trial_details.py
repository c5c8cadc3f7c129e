"""`tuner trial STUDY N`: one trial in full in the terminal, from a real run (Ray, SQLite)."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

import tuner
from tests import objectives
from tuner.cli import main

SPEC = {"name": "td", "search_space": {"params": {"x": {"float": [-3.0, 3.0]}, "tag": {"choice": ["a", None]}}},
        "n_trials": 4, "concurrency": 1, "seed": 3, "metric": "loss", "direction": "minimize", "pruner": "none",
        "max_failures": 4}


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Study ``td``: trials 0-2 and 4 complete with a curve, a checkpoint and a confusion matrix;
    trial 3 failed with a traceback (``objectives.dashboard_mix``)."""
    folder = tmp_path_factory.mktemp("td")
    url = f"sqlite:///{folder / 'td.db'}"
    tuner.run({**SPEC, "artifacts_dir": str(folder / "runs")}, objectives.dashboard_mix, storage=url, num_cpus=1)
    return url


def _show(url: str, *args: str) -> tuple[int, str]:
    out = CliRunner().invoke(main, ["trial", "td", *args, "--storage", url])
    return out.exit_code, out.output


def test_a_complete_trial_shows_its_values_params_curve_matrix_placement_and_files(ran: str) -> None:
    stored = optuna.load_study(study_name="td", storage=ran).trials[0]
    code, text = _show(ran, "0")
    assert code == 0, text
    lines = text.splitlines()
    assert lines[0] == f"trial 0 of study 'td': COMPLETE, loss {stored.value:.6g} (minimize)"
    worker = stored.system_attrs["tuner:worker"]
    assert f"on {worker['host']}, pid {worker['pid']}; folder {worker['trial_dir']}" in lines
    assert any(line.startswith("time: ") and "training " in line for line in lines), lines
    tag = "None" if stored.params["tag"] is None else "a"
    assert f"  x: {stored.params['x']:.6g}" in lines and f"  tag: {tag}" in lines
    start = lines.index("curve (4 steps):")
    assert lines[start + 1].split() == ["step", "loss", "val_acc"]
    for step in range(1, 5):
        loss = abs(stored.params["x"] - 2.0) + 1.0 / step
        assert lines[start + 1 + step].split() == [str(step), f"{loss:.6g}", f"{1.0 / (1.0 + loss):.6g}"]
    matrix = lines.index("confusion matrix (test part; rows: true class, columns: predicted):")
    assert [line.split() for line in lines[matrix + 1:matrix + 4]] == [["0", "1"], ["0", "5", "1"], ["1", "2", "7"]]
    checkpoint = Path(worker["trial_dir"]) / "best.pt"
    assert lines[lines.index("files:") + 1] == f"  {checkpoint} ({checkpoint.stat().st_size} B)"
    assert "error:" not in text


def test_the_confusion_matrix_is_labelled_by_the_per_class_tables_class_names() -> None:
    # A fine-tuning on digits 5..9 printed its per-class table as 5..9 and its matrix as 0..4.
    from tuner._trial_details import _matrix, _per_class

    per_class = {name: {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": n}
                 for name, n in (("5", 3), ("6", 4), ("a-very-long-class-name", 2))}
    matrix = [[3, 0, 0], [0, 4, 0], [1, 0, 1]]
    lines = _matrix(matrix, per_class)
    assert lines[0] == "confusion matrix (test part; rows: true class, columns: predicted):"
    assert [line.split() for line in lines[1:]] == [["5", "6", "a-very-long~"], ["5", "3", "0", "0"],
                                                    ["6", "0", "4", "0"], ["a-very-long~", "1", "0", "1"]]
    assert _per_class(per_class)[0] == "per class (test part):"
    assert [line.split()[0] for line in _per_class(per_class)[2:]] == ["5", "6", "a-very-l"]
    # without names (an objective's own matrix) the classes are numbered
    assert [line.split() for line in _matrix([[1, 2], [3, 4]])[1:]] == [["0", "1"], ["0", "1", "2"], ["1", "3", "4"]]


def test_a_failed_trial_shows_its_whole_traceback(ran: str) -> None:
    code, text = _show(ran, "3")
    assert code == 0, text
    lines = text.splitlines()
    assert lines[0] == "trial 3 of study 'td': FAIL"
    assert "error: RuntimeError: diverged in trial 3: loss is <nan> & rising" in lines
    traceback = lines[lines.index("traceback:") + 1:]
    assert traceback[0] == "  Traceback (most recent call last):"
    assert any("in dashboard_mix" in line for line in traceback) and traceback[-1].startswith("  RuntimeError: diverged")


def test_json_has_everything_and_no_nan(ran: str) -> None:
    code, text = _show(ran, "0", "--json")
    assert code == 0
    d = json.loads(text)
    assert d["number"] == 0 and d["state"] == "COMPLETE" and d["objectives"] == ["loss"]
    assert [row["step"] for row in d["curve"]] == [1, 2, 3, 4] and d["attrs"]["confusion_matrix"] == [[5, 1], [2, 7]]
    assert d["artifacts"][0]["name"] == "best.pt" and d["phases"]["training"] >= 0
    assert tuner.trial_details("td", 0, ran)["values"] == d["values"]
    assert tuner.trial_details("td", 0, storage=ran)["values"] == d["values"]  # storage last, as in the rest of the API
    with pytest.warns(DeprecationWarning, match=r"trial_details\(name, number, storage\)"):
        assert tuner.trial_details("td", ran, 0)["values"] == d["values"]  # the order of before still reads


def test_a_trial_that_is_not_there_is_one_line_naming_what_is(ran: str) -> None:
    code, text = _show(ran, "9")
    assert code == 2 and text == "error: study 'td' has no trial 9; its trials are numbered 0 to 4 (tuner show td lists the best)\n"
    for number in (str(2**63), "99999999999999999999"):  # past what SQLite binds: no OverflowError
        code, text = _show(ran, number)
        assert code == 2 and text == (f"error: study 'td' has no trial {number}; its trials are numbered 0 to 4 "
                                      "(tuner show td lists the best)\n"), text
    out = CliRunner().invoke(main, ["trial", "nope", "0", "--storage", ran])
    assert out.exit_code == 2 and out.output.startswith("error: no study named 'nope'")
    out = CliRunner().invoke(main, ["trial", "td", "x", "--storage", ran])
    assert out.exit_code == 2 and "Traceback" not in out.output


def test_a_long_curve_is_shortened_and_a_pruned_trial_says_where_it_stopped(tmp_path: Path) -> None:
    """A plain Optuna objective's reports (no tuner curve): the pruner's intermediate values are the curve."""
    url = f"sqlite:///{tmp_path / 'p.db'}"
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(study_name="td", storage=url)
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    for step in range(1, 41):
        trial.report(1.0 / step, step)
    study.tell(trial, state=TrialState.PRUNED)
    code, text = _show(url, "0")
    assert code == 0, text
    lines = text.splitlines()
    assert lines[0] == "trial 0 of study 'td': PRUNED at step 40, value 0.025 (minimize)"
    start = lines.index("curve (40 steps):")
    shown = lines[start + 2:]
    assert [row.split()[0] for row in shown[:5]] == ["1", "2", "3", "4", "5"]
    assert shown[5] == "    ...  (15 steps left out; --json has them all)"
    assert [row.split()[0] for row in shown[6:]] == [str(s) for s in range(21, 41)]


def test_a_curve_column_only_the_left_out_steps_have_is_still_a_column(tmp_path: Path) -> None:
    """A metric reported at epochs 6-20 only (a warm-up's end, say) of a 40-epoch curve: every row
    shown lacks it. It used to raise a TypeError (a traceback for the user)."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(study_name="td", storage=url)
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    curve = [{"step": s, "loss": 1.0 / s, **({"lr": 0.01} if 6 <= s <= 20 else {})} for s in range(1, 41)]
    study._storage.set_trial_system_attr(trial._trial_id, "tuner:curve", curve)
    study.tell(trial, 0.025)
    code, text = _show(url, "0")
    assert code == 0, text
    lines = text.splitlines()
    start = lines.index("curve (40 steps):")
    assert lines[start + 1].split() == ["step", "loss", "lr"] and lines[start + 2].split() == ["1", "1", "-"]


def test_show_points_from_a_failure_to_tuner_trial(ran: str) -> None:
    out = CliRunner().invoke(main, ["show", "td", "--storage", ran])
    assert "  failed #3: RuntimeError: diverged in trial 3: loss is <nan> & rising\n" \
           "  (tuner trial td 3 prints a trial in full, a failure's traceback included)\n" in out.output, out.output


def test_metrics_that_are_lists_or_dicts_are_shown_shortened_not_dropped(ran: str) -> None:
    """A returned dict's extra values that are lists or dicts were left out of the text."""
    from tuner._trial_details import trial_lines

    d = tuner.trial_details("td", 0, ran)
    d["metrics"] = {"loss": 0.25, "note": "hello", "lst": [1, 2], "nested": {"a": 1}, "long": list(range(100))}
    line = next(line for line in trial_lines(d) if line.startswith("metrics: "))
    assert line.startswith("metrics: loss 0.25, note hello, lst [1, 2], nested {'a': 1}, long [0, 1, 2")
    assert line.endswith("...")


def test_a_text_choice_that_reads_as_a_number_or_none_is_quoted() -> None:
    """`b: {choice: [1, "1", null, "null"]}`: `tuner trial` printed the string "1" as 1 and "null" as null."""
    from tuner._trial_details import _param

    assert [_param(v) for v in (1, "1", None, "null", "true", True, "adam", 0.5, "0.5")] == [
        "1", "'1'", "None", "'null'", "'true'", "True", "adam", "0.5", "'0.5'"]


def test_tuner_show_and_best_print_a_one_layer_list_as_a_list() -> None:
    """`tuner show` printed `width=298` for a one-layer trial and `width=[101, 380]` for others."""
    from tuner.cli import _fmt_param

    assert [_fmt_param(v) for v in ([298], [101, 380], None, "1")] == ["[298]", "[101, 380]", "None", "'1'"]
