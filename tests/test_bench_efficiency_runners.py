"""Sweep settings of ``python -m bench efficiency_sweep`` (bench/efficiency_runners.py)."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest

from bench.efficiency_problems import PROBLEMS
from bench.efficiency_runners import _OptunaContext, contender_named, parse_setting


def test_a_setting_parses_into_sampler_and_pruner_arguments() -> None:
    assert parse_setting("tpe:n_startup_trials=5/asha:reduction_factor=3") == (
        "tpe", {"n_startup_trials": 5}, "asha", {"reduction_factor": 3})


def test_prune_on_best_is_kept_for_the_replay_and_a_wrong_value_is_refused() -> None:
    assert parse_setting("tpe/median:prune_on=best") == ("tpe", {}, "median", {"prune_on": "best"})
    # "last" is what every pruner sees anyway: it is dropped, so the setting equals the plain one.
    assert parse_setting("tpe/median:prune_on=last") == ("tpe", {}, "median", {})
    with pytest.raises(ValueError, match="prune_on must be last or best"):
        parse_setting("tpe/median:prune_on=first")


@pytest.mark.parametrize(("prune_on", "expected"), [("last", [0.5, 0.7, 0.4]), ("best", [0.5, 0.5, 0.4])])
def test_the_pruner_sees_the_latest_or_the_best_value_so_far(prune_on: str, expected: list[float],
                                                             tmp_path: Path) -> None:
    problem = PROBLEMS["digits_mlp"]  # val_loss, minimised
    study = optuna.create_study(direction=problem.direction, pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    ctx = _OptunaContext(trial, problem, 0, tmp_path, prune_on)
    for step, value in enumerate([0.5, 0.7, float("nan")], start=1):
        ctx.report(step, value)
    ctx.report(4, {problem.metric: 0.4})
    values = study._storage.get_trial(trial._trial_id).intermediate_values
    assert [values[s] for s in (1, 2, 4)] == expected
    assert math.isnan(values[3])  # a NaN epoch is passed through, not hidden behind the best so far


def test_stream_study_is_kept_for_the_replay_and_a_wrong_value_is_refused() -> None:
    assert parse_setting("tpe:stream=study/median") == ("tpe", {"stream": "study"}, "median", {})
    assert parse_setting("tpe:stream=trial/median") == ("tpe", {}, "median", {})
    with pytest.raises(ValueError, match="stream must be trial or study"):
        parse_setting("tpe:stream=worker/median")


def test_interleave_is_kept_for_the_replay_and_a_wrong_value_is_refused() -> None:
    assert parse_setting("tpe:interleave=3/asha") == ("tpe", {"interleave": 3}, "asha", {})
    for bad in ("1", "x", "2.5", "True"):
        with pytest.raises(ValueError, match="interleave must be an integer of at least 2"):
            parse_setting(f"tpe:interleave={bad}/asha")


def test_gamma_is_kept_for_the_replay_and_a_wrong_value_is_refused() -> None:
    assert parse_setting("tpe:gamma=0.2/asha") == ("tpe", {"gamma": 0.2}, "asha", {})
    for bad in ("0", "1", "-0.1", "x", "True"):
        with pytest.raises(ValueError, match="gamma is TPE's share of good trials"):
            parse_setting(f"tpe:gamma={bad}/asha")
    with pytest.raises(ValueError, match="for the tpe sampler"):
        parse_setting("random:gamma=0.2/asha")


def test_a_good_share_replay_changes_tpes_split_and_its_default_share_changes_nothing() -> None:
    # gamma=0.1 is Optuna's own split (the best 10 %, at most 25): the same trials to the last
    # digit; a larger share models more trials as good, so TPE proposes other trials.
    import json

    from bench.efficiency_sweep import replay

    base = replay("tpe/none", "hartmann6", 4, budget_scale=0.5)
    same = replay("tpe:gamma=0.1/none", "hartmann6", 4, budget_scale=0.5)
    wider = replay("tpe:gamma=0.4/none", "hartmann6", 4, budget_scale=0.5)
    assert same["curve"]["points"] == base["curve"]["points"]
    assert json.dumps(wider["curve"]["points"]) != json.dumps(base["curve"]["points"])


def test_alternate_is_tuners_tpe_argument_checked_at_parse_time() -> None:
    assert parse_setting("tpe:alternate=2/asha") == ("tpe", {"alternate": 2}, "asha", {})
    assert contender_named("tuner:tpe:alternate=2/asha").sampler_args == (("alternate", 2),)
    with pytest.raises(ValueError, match="alternate must be an integer of at least 2"):
        parse_setting("tpe:alternate=1/asha")
    with pytest.raises(ValueError, match="alternate"):
        parse_setting("random:alternate=2/asha")


def test_an_alternating_replay_samples_every_kth_trial_in_the_other_tpe_mode() -> None:
    # The sweep passes alternate to tuner's TPE like any argument: with independent TPE named,
    # every second trial is multivariate. Start-up trials are random draws in either mode (same
    # seeds), so the run agrees with independent TPE through the start-up and differs after it.
    import json

    from bench.efficiency_sweep import replay

    base = replay("tpe/none", "branin", 5)
    independent = replay("tpe:multivariate=False,group=False/none", "branin", 5)
    mixed = replay("tpe:multivariate=False,group=False,alternate=2/none", "branin", 5)
    steps = _scaled_steps("branin")
    first_ten = [p for p in mixed["curve"]["points"] if p[0] <= 10 * steps]
    assert first_ten == [p for p in independent["curve"]["points"] if p[0] <= 10 * steps]
    assert json.dumps(mixed["curve"]["points"]) not in (json.dumps(independent["curve"]["points"]),
                                                       json.dumps(base["curve"]["points"]))


def _scaled_steps(problem: str) -> int:
    from bench.efficiency import _scaled

    return _scaled(PROBLEMS, 1.0)[problem].steps


def test_an_interleaved_replay_draws_every_kth_trial_after_the_tenth_at_random() -> None:
    # The interleaved trials are the random replay's own draws for those trial numbers; the
    # others (and the first ten) are the setting's, so the first ten trials match it exactly.
    import json

    from bench.efficiency import _scaled
    from bench.efficiency_sweep import replay

    base = replay("tpe/none", "branin", 5)
    mixed = replay("tpe:interleave=3/none", "branin", 5)
    assert mixed["lib_trials"] == base["lib_trials"] > 12
    steps = _scaled(PROBLEMS, 1.0)["branin"].steps
    first_ten = 10 * steps
    assert [p for p in mixed["curve"]["points"] if p[0] <= first_ten] == \
        [p for p in base["curve"]["points"] if p[0] <= first_ten]
    assert json.dumps(mixed["curve"]["points"]) != json.dumps(base["curve"]["points"])


def test_a_one_stream_replay_is_plain_optunas_run(tmp_path: Path) -> None:
    # The sweep's loop with one sampler kept across trials runs exactly what the `optuna`
    # contender runs (multivariate TPE + MedianPruner, one study seed); per-trial seeding does not.
    from bench.efficiency import _scaled
    from bench.efficiency_problems import StepLog
    from bench.efficiency_report import curve_from_log
    from bench.efficiency_runners import contenders, run_contender
    from bench.efficiency_sweep import replay

    problem = _scaled(PROBLEMS, 0.4)["branin"]
    setting = "tpe:multivariate=True,group=False,stream=study/median:n_warmup_steps=0"
    one = replay(setting, "branin", 3, budget_scale=0.4)
    per_trial = replay(setting.replace(",stream=study", ""), "branin", 3, budget_scale=0.4)
    optuna_contender = next(c for c in contenders() if c.name == "optuna")
    run = run_contender(optuna_contender, problem, seed=3, quick=False, concurrency=1, workdir=tmp_path)
    contender = curve_from_log(StepLog(Path(run["log"])).records(), problem.budget, problem.direction)
    assert one["curve"]["points"] == contender["points"]
    assert per_trial["curve"]["points"] != one["curve"]["points"]


@pytest.mark.parametrize("name", ["tuner:tpe:stream=study/asha", "tuner:tpe/median:prune_on=best",
                                  "tuner:tpe:interleave=3/asha", "tuner:tpe:gamma=0.2/asha"])
def test_a_sweep_only_option_is_refused_for_a_tuner_contender(name: str) -> None:
    with pytest.raises(ValueError, match="option of efficiency_sweep's replay"):
        contender_named(name)
    assert contender_named("tuner:tpe/asha:reduction_factor=3").pruner_args == (("reduction_factor", 3),)


def test_a_one_stream_random_replay_is_the_random_contenders_run(tmp_path: Path) -> None:
    # What `efficiency_sweep --baseline random:stream=study/none` measures shares against.
    from bench.efficiency import _scaled
    from bench.efficiency_problems import StepLog
    from bench.efficiency_report import curve_from_log
    from bench.efficiency_runners import contenders, run_contender
    from bench.efficiency_sweep import replay

    problem = _scaled(PROBLEMS, 0.4)["hartmann6"]
    one = replay("random:stream=study/none", "hartmann6", 5, budget_scale=0.4)
    per_trial = replay("random/none", "hartmann6", 5, budget_scale=0.4)
    random_contender = next(c for c in contenders() if c.name == "random")
    run = run_contender(random_contender, problem, seed=5, quick=False, concurrency=1, workdir=tmp_path)
    contender = curve_from_log(StepLog(Path(run["log"])).records(), problem.budget, problem.direction)
    assert one["curve"]["points"] == contender["points"]
    assert per_trial["curve"]["points"] != one["curve"]["points"]


def test_the_sweeps_baseline_is_the_setting_named_by_baseline(tmp_path: Path) -> None:
    import json

    from bench.efficiency_sweep import main

    assert main(["--problems", "branin", "--seeds", "1", "--seed-start", "5", "--budget", "0.4", "--processes", "1",
                 "--settings", "tpe/asha", "--baseline", "random:stream=study/none", "--out", str(tmp_path)]) == 0
    runs = json.loads(next(tmp_path.glob("*.json")).read_text())["runs"]
    assert sorted(r["contender"] for r in runs) == ["random", "tpe/asha"]  # per-trial random/none not run
    baseline = next(r for r in runs if r["contender"] == "random")
    one_stream = _replay_final("random:stream=study/none")
    assert baseline["curve"]["points"][-1][1] == one_stream
    target = f"target: random's mean final best {one_stream:.4g}"
    assert target in next(tmp_path.glob("*.md")).read_text()


def test_the_lead_column_compares_with_the_first_setting_even_when_it_is_the_baseline(tmp_path: Path) -> None:
    from bench.efficiency_sweep import main

    assert main(["--problems", "branin", "--seeds", "2", "--budget", "0.4", "--processes", "1", "--settings",
                 "random:stream=study/none", "tpe/asha", "--baseline", "random:stream=study/none",
                 "--out", str(tmp_path)]) == 0
    text = next(tmp_path.glob("*.md")).read_text()
    assert "lead over random per seed" in text
    assert "| random | 2 |" in text and "(reference) |" in text
    tpe_row = next(line for line in text.splitlines() if line.startswith("| tpe/asha |"))
    assert "/2 better" in tpe_row


def _replay_final(setting: str) -> float:
    from bench.efficiency_sweep import replay

    return float(replay(setting, "branin", 5, budget_scale=0.4)["curve"]["points"][-1][1])


def _qmc_second_point(study_seed: int) -> dict:
    """Trial 1's parameters under the sweep's qmc/none, drawn the way its replay draws them."""
    from tuner.engine._plugins import make_sampler, trial_seed
    from tuner.space import SearchSpace

    name, args, _pruner, _pargs = parse_setting("qmc/none")
    space = SearchSpace.from_mapping(PROBLEMS["branin"].space, source="bench:branin")
    study = optuna.create_study()
    for number in range(2):
        study.sampler = make_sampler(name, args, seed=trial_seed(study_seed, number), space=space,
                                     study_seed=study_seed)
        trial = study.ask()
        params = space.suggest(trial)
        study.tell(trial, 0.0)
    return params


def test_the_benchs_qmc_is_scrambled_so_that_each_seed_is_a_replicate() -> None:
    # Optuna's default, unscrambled, drew the same points for every seed: a mean over seeds of
    # one sequence. The bench's qmc (contender and sweep setting) is scrambled with the study's seed.
    from bench.efficiency_runners import contenders, tuner_spec

    assert parse_setting("qmc/asha")[1] == {"scramble": True}
    assert parse_setting("qmc:scramble=False/asha")[1] == {"scramble": False}  # named: kept
    qmc = next(c for c in contenders() if c.sampler == "qmc")
    assert tuner_spec(qmc, PROBLEMS["branin"], seed=0, concurrency=1)["sampler"] == \
        {"name": "qmc", "args": {"scramble": True}}
    assert contender_named("tuner:qmc/none").sampler_args == (("scramble", True),)
    assert _qmc_second_point(0) != _qmc_second_point(1)
    assert _qmc_second_point(3) == _qmc_second_point(3)


@pytest.mark.parametrize(("setting", "says"), [
    ("tpe/asha:reduction_factor=x", "reduction_factor=x: the argument needs a number"),
    ("tpe/median:n_warmup_steps=q", "n_warmup_steps=q: the argument needs a number"),
])
def test_an_argument_that_is_not_a_number_is_named(setting: str, says: str) -> None:
    # Optuna's own comparison said only "'<' not supported between instances of 'str' and 'int'".
    with pytest.raises(ValueError, match=says):
        parse_setting(setting)
    with pytest.raises(ValueError, match=says):
        contender_named(f"tuner:{setting}")
