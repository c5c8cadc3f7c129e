"""tuner's sampler and pruner defaults, which depend on the search space (tuner/engine/_plugins.py)."""

from __future__ import annotations


from pathlib import Path
from typing import Any

import pytest
from optuna.trial import TrialState

import tuner
from tests import objectives
from tuner.engine import _attrs
from tuner.engine._plugins import describe_plugin, make_pruner, make_sampler, training_seed, trial_seed
from tuner.space import SearchSpace

NUMBERS = SearchSpace.from_mapping({"params": {"x": {"float": [0.0, 1.0]}, "n": {"int": [1, 8]}}}, source="t")
CATEGORICAL = SearchSpace.from_mapping(
    {"params": {"x": {"float": [0.0, 1.0]}, "act": {"choice": ["relu", "tanh"]}}}, source="t")
ONE_CHOICE = SearchSpace.from_mapping({"params": {"x": {"float": [0.0, 1.0]}, "act": {"choice": ["relu"]}}},
                                      source="t")


def _tpe(args: dict[str, Any], space: SearchSpace) -> tuple[bool, bool, bool]:
    s: Any = make_sampler("tpe", args, seed=0, space=space)
    return s._multivariate, s._group, s._constant_liar


def _candidates_and_alternation(args: dict[str, Any], space: SearchSpace) -> tuple[int, int]:
    s: Any = make_sampler("tpe", args, seed=0, space=space)
    return s._n_ei_candidates, s._other_every


def _rf(args: dict[str, Any], space: SearchSpace | None) -> int:
    return make_pruner("asha", args, space=space)._reduction_factor  # type: ignore[attr-defined]


def test_has_categorical_needs_a_choice_of_two_or_more() -> None:
    assert CATEGORICAL.has_categorical()
    assert not NUMBERS.has_categorical() and not ONE_CHOICE.has_categorical()


def test_numbers_only_space_gets_multivariate_tpe_and_asha_reduction_4() -> None:
    assert _tpe({}, NUMBERS) == (True, True, True)
    assert _tpe({}, ONE_CHOICE) == (True, True, True)
    assert _rf({}, NUMBERS) == 4 and _rf({}, None) == 4


def test_space_with_a_choice_gets_independent_tpe_and_asha_reduction_3() -> None:
    assert _tpe({}, CATEGORICAL) == (False, False, True)
    assert _candidates_and_alternation({}, CATEGORICAL) == (4, 2)  # 4 EI candidates, every 2nd trial multivariate
    assert _candidates_and_alternation({}, NUMBERS) == (24, 0)  # Optuna's 24, no alternation
    assert _rf({}, CATEGORICAL) == 3


def test_other_arguments_override_the_preset_one_by_one() -> None:
    assert _candidates_and_alternation({"n_ei_candidates": 24}, CATEGORICAL) == (24, 2)
    assert _candidates_and_alternation({"alternate": 3}, CATEGORICAL) == (4, 3)
    assert _candidates_and_alternation({"alternate": None}, CATEGORICAL) == (4, 0)
    assert _tpe({"n_ei_candidates": 24, "alternate": None}, CATEGORICAL) == (False, False, True)


def test_naming_the_tpe_model_drops_the_preset_as_a_whole() -> None:
    # group alone keeps multivariate on (Optuna refuses group without it): no error
    assert _tpe({"group": True}, CATEGORICAL) == (True, True, True)
    assert _tpe({"multivariate": True}, CATEGORICAL) == (True, True, True)
    # the candidates and alternation were measured with independent TPE: they go with it
    assert _candidates_and_alternation({"multivariate": True}, CATEGORICAL) == (24, 0)
    assert _candidates_and_alternation({"multivariate": False}, CATEGORICAL) == (24, 0)
    # multivariate: false alone turns tuner's default group off with it (Optuna refuses group alone)
    assert _tpe({"multivariate": False}, CATEGORICAL) == (False, False, True)
    assert _tpe({"multivariate": False}, NUMBERS) == (False, False, True)
    # group: false is what the preset holds already: it keeps the preset
    assert _tpe({"group": False}, CATEGORICAL) == (False, False, True)
    assert _candidates_and_alternation({"group": False}, CATEGORICAL) == (4, 2)
    assert _tpe({"multivariate": False, "group": False}, NUMBERS) == (False, False, True)
    assert _tpe({"constant_liar": False}, CATEGORICAL) == (False, False, False)
    assert _rf({"reduction_factor": 2}, CATEGORICAL) == 2


def test_cmaes_counts_pruned_trials_on_a_numbers_only_space_only() -> None:
    def considers(args: dict[str, Any], space: SearchSpace | None) -> bool:
        return make_sampler("cmaes", args, seed=0, space=space)._consider_pruned_trials  # type: ignore[attr-defined]

    assert considers({}, NUMBERS) and considers({}, ONE_CHOICE) and considers({}, None)
    assert not considers({}, CATEGORICAL)
    # named, it wins either way
    assert considers({"consider_pruned_trials": True}, CATEGORICAL)
    assert not considers({"consider_pruned_trials": False}, NUMBERS)
    assert describe_plugin("sampler", "cmaes", {}, CATEGORICAL) == (
        "cmaes (consider_pruned_trials False: the space has categorical parameters)")
    assert describe_plugin("sampler", "cmaes", {}, NUMBERS) == "cmaes (counts pruned trials: the space holds numbers only)"


def test_asha_is_tuners_successive_halving_with_the_presets_arguments() -> None:
    from tuner.engine._pruners import SuccessiveHalvingPruner

    pruner: Any = make_pruner("asha", {"max_rungs": 1}, space=CATEGORICAL)
    assert isinstance(pruner, SuccessiveHalvingPruner)
    assert (pruner._reduction_factor, pruner._max_rungs) == (3, 1)  # the preset stays: its key was not named


def test_describe_names_what_the_space_changed() -> None:
    assert describe_plugin("sampler", "tpe", {}, NUMBERS) == "tpe (multivariate, grouped: the space holds numbers only)"
    assert describe_plugin("sampler", "tpe", {"group": False}, NUMBERS) == "tpe"
    assert describe_plugin("pruner", "asha", {}, NUMBERS) == "asha (reduction_factor 4: the space holds numbers only)"
    assert describe_plugin("sampler", "tpe", {}, CATEGORICAL) == (
        "tpe (independent, 4 EI candidates, every 2nd trial multivariate: the space has categorical parameters)")
    assert describe_plugin("sampler", "tpe", {"n_ei_candidates": 24, "alternate": None}, CATEGORICAL) == (
        "tpe (independent: the space has categorical parameters)")
    assert describe_plugin("sampler", "tpe", {"multivariate": True}, CATEGORICAL) == "tpe"
    assert describe_plugin("pruner", "asha", {}, CATEGORICAL) == (
        "asha (reduction_factor 3: the space has categorical parameters)")
    assert describe_plugin("pruner", "asha", {"reduction_factor": 4}, CATEGORICAL) == "asha"
    assert describe_plugin("pruner", "median", {}, CATEGORICAL) == "median"
    assert describe_plugin("sampler", "tpe", {"alternate": 3}, CATEGORICAL) == (
        "tpe (independent, 4 EI candidates: the space has categorical parameters; every 3rd trial multivariate)")
    assert describe_plugin("sampler", "tpe", {"alternate": 4}, NUMBERS) == (
        "tpe (multivariate, grouped: the space holds numbers only; every 4th trial independent)")
    assert describe_plugin("sampler", "tpe", {"alternate": 22}, NUMBERS) == (
        "tpe (multivariate, grouped: the space holds numbers only; every 22nd trial independent)")


@pytest.mark.usefixtures("ray_cluster")
@pytest.mark.parametrize("space, expected", [
    (CATEGORICAL.to_dict(), {"multivariate": False, "group": False, "n_ei_candidates": 4, "alternate": 2,
                             "reduction_factor": 3}),
    (NUMBERS.to_dict(), {"multivariate": True, "group": True, "n_ei_candidates": 24, "alternate": 0,
                         "reduction_factor": 4}),
], ids=["categorical", "numbers"])
def test_workers_build_the_spaces_defaults(sqlite_url: str, space: dict[str, Any], expected: dict[str, Any]) -> None:
    spec = {"name": "plugins", "search_space": space, "n_trials": 3, "concurrency": 1, "seed": 0}
    study = tuner.run(spec, objectives.plugin_probe, storage=sqlite_url)
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 3
    for t in trials:
        assert {k: t.system_attrs[_attrs.ATTR_PREFIX + k] for k in expected} == expected


def test_a_trials_sampler_seed_is_not_its_training_seed() -> None:
    """ctx.seed (training_seed) seeds torch; a sampler seeded with the same integer
    would draw the trial's parameters from the very numbers its weight init and batch order use."""
    import numpy as np
    import torch

    ctx_seeds = {training_seed(s, n) for s in range(5) for n in range(300)}
    sampler_seeds = {trial_seed(s, n) for s in range(5) for n in range(300)}
    assert len(sampler_seeds) == 1500 and not sampler_seeds & ctx_seeds
    for s, n in ((0, 0), (3, 17)):
        words = np.random.RandomState(trial_seed(s, n)).randint(0, 2**32, size=8, dtype=np.uint64)
        torch_words = torch.randint(0, 2**32, (4,), generator=torch.Generator().manual_seed(training_seed(s, n)))
        assert not set(words.tolist()) & set(torch_words.tolist())


def test_trial_seeds_are_stable_across_versions() -> None:
    """Changing them changes every seeded study's trials; pinned so that it is done on purpose."""
    assert (trial_seed(0, 0), trial_seed(1, 2)) == (932831190, 690091414)
    assert trial_seed(None, 5) is None


def _qmc_points(make: Any, n: int) -> list[tuple[float, int]]:
    """A numbers-only study run as tuner's workers run one: a fresh sampler per trial."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study()
    out = []
    for number in range(n):
        study.sampler = make(number)
        trial = study.ask()
        params = NUMBERS.suggest(trial)
        study.tell(trial, params["x"])
        out.append((params["x"], params["n"]))
    return out


def test_scrambled_qmc_draws_one_sequence_across_per_trial_samplers() -> None:
    # Each trial gets its own sampler seeded by its number; a scrambled QMC sequence must still be
    # one sequence, the one a single Optuna QMCSampler with the study's seed draws.
    import optuna

    args = {"scramble": True}
    ours = _qmc_points(lambda k: make_sampler("qmc", args, seed=trial_seed(5, k), space=NUMBERS, study_seed=5), 9)
    single = optuna.samplers.QMCSampler(scramble=True, seed=5)
    theirs = _qmc_points(lambda k: single, 9)
    # trial 0 is drawn by the independent sampler (QMC learns the space from it): the trial's seed
    assert ours[1:] == theirs[1:]
    # the trial's seed alone (what tuner passed before) scrambles differently in every trial
    before = _qmc_points(lambda k: make_sampler("qmc", args, seed=trial_seed(5, k), space=NUMBERS), 9)
    assert before[1:] != theirs[1:]
    # unscrambled (Optuna's default) the sequence ignores seeds: study_seed changes nothing there
    plain = _qmc_points(lambda k: make_sampler("qmc", {}, seed=trial_seed(5, k), space=NUMBERS, study_seed=5), 9)
    assert plain == _qmc_points(lambda k: make_sampler("qmc", {}, seed=trial_seed(5, k), space=NUMBERS), 9)


def _qmc_points_in_parallel(make: Any, n: int, order: list[int]) -> list[tuple[float, int]]:
    """The same study with every trial asked before any is told, in ``order``: trials in parallel."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study()
    trials = [study.ask() for _ in range(n)]  # numbers 0..n-1, all RUNNING
    drawn: dict[int, tuple[float, int]] = {}
    for number in order:
        trial = trials[number]
        study.sampler = make(number)
        params = NUMBERS.suggest(trial)
        drawn[number] = (params["x"], params["n"])
    for trial in trials:
        study.tell(trial, drawn[trial.number][0])
    return [drawn[k] for k in range(n)]


@pytest.mark.parametrize("scramble", [True, False])
def test_qmc_gives_trial_k_the_same_point_whatever_the_concurrency(scramble: bool) -> None:
    # Optuna numbers the points in the order trials ask, and learns the space from completed
    # trials: at concurrency 2 one seed gave other trials other points, some off the sequence.
    args = {"scramble": scramble}
    sequential = _qmc_points(lambda k: make_sampler("qmc", args, seed=trial_seed(5, k), space=NUMBERS,
                                                    study_seed=5), 6)
    for order in ([0, 1, 2, 3, 4, 5], [2, 0, 5, 1, 4, 3]):
        assert _qmc_points_in_parallel(lambda k: make_sampler("qmc", args, seed=trial_seed(5, k), space=NUMBERS,
                                                              study_seed=5), 6, order) == sequential
    import optuna

    single = optuna.samplers.QMCSampler(scramble=scramble, seed=5)
    assert _qmc_points(lambda k: single, 6)[1:] == sequential[1:]  # a sequential Optuna run's points
    plain = optuna.samplers.QMCSampler(scramble=scramble, seed=5)  # what tuner ran before: points by asking order
    assert _qmc_points_in_parallel(lambda k: plain, 6, [2, 0, 5, 1, 4, 3])[1:] != sequential[1:]


def test_qmc_study_seed_is_the_studys_or_one_every_worker_derives_alike() -> None:
    from tuner.engine._plugins import qmc_study_seed

    assert qmc_study_seed(7, "a") == 7
    assert qmc_study_seed(None, "a") == qmc_study_seed(None, "a") != qmc_study_seed(None, "b")


# Every integer count argument of the samplers and pruners tuner offers, one value below its least.
# Those Optuna left unchecked ran (n_startup_trials -3 acting as 0, Hyperband dividing by zero at
# the first report); all must fail at validation with one line naming the field and the range.
_BELOW_RANGE = [
    ("sampler", "tpe", "n_startup_trials", -3, ">= 0"),
    ("sampler", "cmaes", "n_startup_trials", -1, ">= 0"),
    ("sampler", "cmaes", "popsize", 1, ">= 2"),
    ("sampler", "gp", "n_startup_trials", -3, ">= 0"),
    ("sampler", "nsga2", "population_size", 1, ">= 2"),
    ("pruner", "median", "n_startup_trials", -1, ">= 0"),
    ("pruner", "median", "n_warmup_steps", -1, ">= 0"),
    ("pruner", "median", "interval_steps", 0, ">= 1"),
    ("pruner", "median", "n_min_trials", 0, ">= 1"),
    ("pruner", "percentile", "n_startup_trials", -1, ">= 0"),
    ("pruner", "percentile", "n_warmup_steps", -1, ">= 0"),
    ("pruner", "percentile", "interval_steps", 0, ">= 1"),
    ("pruner", "percentile", "n_min_trials", 0, ">= 1"),
    ("pruner", "asha", "min_resource", 0, ">= 1"),
    ("pruner", "asha", "reduction_factor", 1, ">= 2"),
    ("pruner", "asha", "min_early_stopping_rate", -1, ">= 0"),
    ("pruner", "asha", "bootstrap_count", -1, ">= 0"),
    ("pruner", "asha", "max_rungs", 0, ">= 1"),
    ("pruner", "hyperband", "min_resource", 0, ">= 1"),
    ("pruner", "hyperband", "max_resource", 0, ">= 1"),
    ("pruner", "hyperband", "reduction_factor", 1, ">= 2"),
    ("pruner", "hyperband", "bootstrap_count", -1, ">= 0"),
]
_SPEC_BASE: dict[str, Any] = {"name": "s", "objective": "tests.objectives:quadratic",
                              "search_space": {"params": {"x": {"float": [-1.0, 1.0]}}}}


def _plugin_spec(kind: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
    if name == "percentile":
        args = {"percentile": 25.0, **args}
    return {**_SPEC_BASE, kind: {"name": name, "args": args}, **({"pruner": "none"} if name == "nsga2" else {})}


@pytest.mark.parametrize(("kind", "name", "arg", "value", "allowed"), _BELOW_RANGE)
def test_integer_counts_below_their_range_fail_in_one_line(kind: str, name: str, arg: str, value: int,
                                                           allowed: str) -> None:
    from tuner.spec import spec_from_mapping

    with pytest.raises(tuner.SpecError) as info:
        spec_from_mapping(_plugin_spec(kind, name, {arg: value}), source="t.yaml")
    assert str(info.value) == (f"t.yaml: {kind}.args.{arg}: {arg} {value} is out of range for {name}; "
                               f"use an integer {allowed}")
    low = int(allowed.split()[-1])
    spec_from_mapping(_plugin_spec(kind, name, {arg: low}), source="t.yaml")  # the least value is accepted


@pytest.mark.parametrize(("args", "message"), [
    # Optuna 5.0 takes these unchecked: x0 off the space fails every trial on an AssertionError at
    # its first CMA-ES draw, sigma0 <= 0 is clipped to 1e-8, restarts are ignored since 4.4.
    ({"x0": {"x": 5}}, "sampler.args.x0.x: 5 is outside x's range [-1.0, 1.0]; give a number in the range"),
    ({"x0": {"x": "a"}}, "sampler.args.x0.x: 'a' is not a number; give a number in the range"),
    ({"x0": {"x": "5e-1"}}, "sampler.args.x0.x: YAML reads 5e-1 as text (a number needs a dot and a signed "
                            "exponent); write 0.5"),
    ({"x0": {"x": 0.5, "y": 0.1}}, "sampler.args.x0.y: 'y' is not a number range every trial draws "
                                   "(those are: x, n); give x0 a value for each of those"),
    ({"x0": {"x": 0.5}}, "sampler.args.x0: x0 gives no value for n; give x0 a value for each of: x, n"),
    ({"sigma0": 0}, "sampler.args.sigma0: sigma0 0 is not a positive step size; use a number > 0 or leave sigma0 out"),
    ({"sigma0": -0.5}, "sampler.args.sigma0: sigma0 -0.5 is not a positive step size; use a number > 0 or leave "
                       "sigma0 out"),
    ({"restart_strategy": "ipop"}, "sampler.args.restart_strategy: Optuna ignores restart_strategy since 4.4 "
                                   "(restarts moved to OptunaHub); leave restart_strategy out"),
    ({"inc_popsize": 2}, "sampler.args.inc_popsize: Optuna ignores inc_popsize since 4.4 (restarts moved to "
                         "OptunaHub); leave inc_popsize out"),
])
def test_cmaes_arguments_optuna_takes_unchecked_are_refused_in_one_line(args: dict[str, Any], message: str) -> None:
    from tuner.spec import spec_from_mapping

    space = {"params": {"x": {"float": [-1.0, 1.0]}, "n": {"int": [1, 4]}, "c": {"choice": ["a", "b"]},
                        "y": {"float": [0.0, 1.0], "when": {"c": "a"}}, "k": {"value": 3}}}
    spec = {**_SPEC_BASE, "search_space": space, "sampler": {"name": "cmaes", "args": args}}
    with pytest.raises(tuner.SpecError) as info:
        spec_from_mapping(spec, source="t.yaml")
    assert str(info.value) == f"t.yaml: {message}"


def test_cmaes_x0_and_sigma0_on_the_space_are_accepted_and_used() -> None:
    import optuna

    from tuner.spec import spec_from_mapping

    spec = spec_from_mapping({**_SPEC_BASE, "sampler": {"name": "cmaes", "args": {
        "x0": {"x": 0.75}, "sigma0": 1e-6, "n_startup_trials": 0}}}, source="t.yaml")
    sampler = make_sampler(spec.sampler, spec.sampler_args, seed=0, space=spec.search_space)
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: spec.search_space.suggest(t)["x"] ** 2, n_trials=3)
    # the first trial is CMA-ES's and, with a tiny sigma0, lands at x0
    assert study.trials[1].params["x"] == pytest.approx(0.75, abs=1e-3)


def test_hyperband_max_resource_below_min_resource_is_refused() -> None:
    # Optuna builds no bracket then, and the pruner silently never prunes.
    from tuner.spec import spec_from_mapping

    with pytest.raises(tuner.SpecError, match=r"pruner\.args\.max_resource: max_resource 2 is out of range for "
                                              r"hyperband; use auto or an integer >= min_resource \(4\)"):
        spec_from_mapping(_plugin_spec("pruner", "hyperband", {"min_resource": 4, "max_resource": 2}), source="t.yaml")
    spec_from_mapping(_plugin_spec("pruner", "hyperband", {"min_resource": 4, "max_resource": 4}), source="t.yaml")
    spec_from_mapping(_plugin_spec("pruner", "hyperband", {"min_resource": 4, "max_resource": "auto"}), source="t.yaml")


@pytest.mark.parametrize(("kind", "name", "args", "words"), [
    # checked by the constructors themselves (tuner's TPE, Optuna's pruners): one line too
    ("sampler", "tpe", {"n_ei_candidates": 0}, "n_ei_candidates must be an integer of at least 1"),
    ("sampler", "tpe", {"alternate": 1}, "alternate must be an integer of at least 2"),
    ("pruner", "asha", {"bootstrap_count": 2}, "bootstrap_count > 0 and min_resource == 'auto'"),
    ("pruner", "percentile", {"percentile": 101.0}, "percentile"),
])
def test_values_the_constructors_refuse_are_one_line_errors(kind: str, name: str, args: dict[str, Any],
                                                           words: str) -> None:
    from tuner.spec import spec_from_mapping

    with pytest.raises(tuner.SpecError) as info:
        spec_from_mapping(_plugin_spec(kind, name, args), source="t.yaml")
    message = str(info.value)
    assert message.startswith(f"t.yaml: {kind}.args") and words in message and "; " in message
    assert "\n" not in message


def test_a_negative_count_on_the_command_line_exits_2_in_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tuner.cli import main

    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\nobjective: tests.objectives:quadratic\n"
                    "search_space: {params: {x: {float: [0.0, 1.0]}}}\n")
    out = CliRunner().invoke(main, ["validate", str(spec), "--set", "sampler.args.n_startup_trials=-3"])
    assert out.exit_code == 2 and "Traceback" not in out.output
    assert out.output.strip() == (f"error: {spec}: sampler.args.n_startup_trials: n_startup_trials -3 is out of "
                                  "range for tpe (sampler.args.n_startup_trials=-3 given on the command line); "
                                  "use an integer >= 0")


@pytest.mark.parametrize(("name", "args"), [
    ("tpe", {"gamma": 0.1}), ("tpe", {"weights": 3}), ("tpe", {"constraints_func": "foo"}),
    ("gp", {"constraints_func": "foo"}), ("cmaes", {"independent_sampler": "random"}),
    ("nsga2", {"crossover": "uniform"}),
])
def test_arguments_that_take_a_python_function_or_object_are_refused(name: str, args: dict[str, Any]) -> None:
    """A YAML number or name for TPE's gamma (a function) passed validation, then every trial failed
    ('float' object is not callable) until max_failures stopped the run."""
    from tuner.spec import spec_from_mapping

    arg = next(iter(args))
    with pytest.raises(tuner.SpecError) as info:
        spec_from_mapping(_plugin_spec("sampler", name, args), source="t.yaml")
    assert str(info.value) == (f"t.yaml: sampler.args.{arg}: {name}'s {arg} takes a Python function or object, "
                               f"which a spec cannot give (got {args[arg]!r}); leave {arg} out")


def test_a_mapping_argument_given_something_else_is_refused() -> None:
    from tuner.spec import spec_from_mapping

    with pytest.raises(tuner.SpecError, match=r"sampler\.args\.x0: cmaes expects a mapping or null, got 5"):
        spec_from_mapping(_plugin_spec("sampler", "cmaes", {"x0": 5}), source="t.yaml")


@pytest.mark.parametrize("name", ["qmc", "gp"])
def test_qmc_and_gp_do_not_warn_per_trial_about_parameters_they_draw_at_random(name: str) -> None:
    """Optuna warned once per conditional parameter per trial (37 of a 12-trial run's 51 lines)."""
    import warnings

    import optuna

    from tuner.engine._plugins import make_sampler

    study = optuna.create_study(sampler=make_sampler(name, {}, seed=1, space=None, study_seed=1))
    study.enqueue_trial({"c": "b"})  # the first trial without y: later ones draw y outside the sampler's space
    for _ in range(6):
        study.enqueue_trial({"c": "a"})

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        return x + (trial.suggest_float("y", 0, 1) if trial.suggest_categorical("c", ["a", "b"]) == "a" else 0.0)

    import logging

    said: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("optuna")
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.optimize(objective, n_trials=7)
    finally:
        logger.removeHandler(handler)
    assert len(study.trials) == 7 and not [m for m in said if "independent" in m], said
