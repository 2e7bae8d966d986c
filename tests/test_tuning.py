"""Tuning studies (hydra_plugins/hoopt_tuning, runner/training/objective.py, runner/reports/best.py), in this process:
the objective a run is ranked by, search spaces in Hydra's override grammar, the sweeper driven by Hydra with task
functions of our own (studies in SQLite, resumed after a kill, one study per optimizer, grids), hoopt-report
--best-by and the tuning presets. test_tuning_cli.py runs the same through the console scripts."""

import json
import math
import os
import shlex
import subprocess
import sys

import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.test_utils.test_utils import SweepTaskFunction
from omegaconf import OmegaConf

from hoopt.runner.errors import HooptError
from hoopt.runner.training.objective import missing_metric, objective_value, tune_settings, worst_value
from hoopt.runner.training.presets import CONFIG_DIR, compose_config

TRAIN_PY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "runner", "cli", "train.py")


# -- the objective --------------------------------------------------------------------------------------------------

def write_run(run_dir, status, records):
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "status.json"), "w") as f:
        json.dump({"status": status}, f)
    with open(os.path.join(run_dir, "metrics.jsonl"), "w") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")


def tuned(**tune):
    return {"trainer": {"steps": 200}, "tune": tune}


EPOCHS = [{"step": 10, "epoch": 1, "val/loss": 0.9, "val/acc": 0.5}, {"step": 20, "epoch": 2, "val/loss": 0.4},
          {"step": 30, "epoch": 3, "val/loss": 0.6, "val/acc": 0.8}]


def test_the_objective_is_the_final_best_or_last_tenth_mean_of_a_tag(tmp_path):
    write_run(tmp_path / "a", "completed", EPOCHS)
    assert objective_value(tuned(), tmp_path / "a") == 0.6  # defaults: val/loss, min, final
    assert objective_value(tuned(reduce="best"), tmp_path / "a") == 0.4
    assert objective_value(tuned(metric="val/acc", mode="max", reduce="best"), tmp_path / "a") == 0.8
    # the LODO paper's measure: steps 181-200 of 200, each record standing for the steps since the previous one
    steps = [{"step": s, "train/loss": 1.0 if s <= 180 else 0.1 * (s - 180)} for s in range(1, 201)]
    write_run(tmp_path / "b", "completed", steps)
    assert objective_value(tuned(metric="train/loss", reduce="mean_last"), tmp_path / "b") == pytest.approx(1.05)
    assert objective_value(tuned(metric="train/loss", reduce="mean_last", fraction=0.5), tmp_path / "b") == \
        pytest.approx((80 * 1.0 + sum(0.1 * k for k in range(1, 21))) / 100)


@pytest.mark.parametrize("status", ["diverged", "failed", "running", "interrupted", None])
def test_a_run_that_did_not_complete_ranks_last(tmp_path, status):
    if status is not None:
        write_run(tmp_path, status, EPOCHS)
    assert objective_value(tuned(), tmp_path) == math.inf
    assert objective_value(tuned(metric="val/acc", mode="max"), tmp_path) == -math.inf
    assert objective_value(tuned(), tmp_path, {"status": status}) == math.inf


def test_a_missing_or_non_finite_metric_ranks_last_and_a_misspelt_one_is_named(tmp_path):
    write_run(tmp_path, "completed", [*EPOCHS, {"step": 40, "epoch": 4, "val/loss": "nan"}])
    assert objective_value(tuned(), tmp_path) == math.inf  # the last value is nan
    assert objective_value(tuned(metric="val/los"), tmp_path) == math.inf
    assert missing_metric(tuned(metric="val/los"), tmp_path) == (
        f"tune.metric=val/los is never logged by the run in {tmp_path}; choose one of the tags it logged: val/acc, "
        f"val/loss.")
    assert missing_metric(tuned(), tmp_path) is None


def test_the_objective_never_raises(tmp_path):
    write_run(tmp_path, "completed", EPOCHS)
    assert objective_value(tuned(mode="sideways"), tmp_path) == math.inf
    assert objective_value(None, tmp_path / "nowhere") == math.inf
    assert objective_value({"tune": "val/loss"}, tmp_path) == math.inf
    assert worst_value("max") == -math.inf


@pytest.mark.parametrize("tune, message", [
    ({"mode": "best"}, "tune.mode='best' is not understood; give tune.mode=min or tune.mode=max."),
    ({"reduce": "last"}, "tune.reduce='last' is not understood; give one of: final, best, mean_last."),
    ({"fraction": 0}, "tune.fraction=0 is out of range"),
])
def test_bad_tune_settings_are_one_sentence(tune, message):
    with pytest.raises(HooptError, match=message.replace("(", r"\(").replace(")", r"\)")):
        tune_settings({"tune": tune})


def test_the_default_config_ranks_by_its_tune_file():
    assert OmegaConf.load(os.path.join(CONFIG_DIR, "tune", "default.yaml")).metric == tune_settings({}).metric


# -- search spaces ------------------------------------------------------------------------------------------------

def param(text):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from hydra_plugins.hoopt_tuning._space import parse_param

    return parse_param(OverridesParser.create().parse_overrides([text])[0])


def test_search_spaces_in_hydras_override_grammar():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    assert param("optimizer.lr=tag(log, interval(1e-5, 1))").distribution() == FloatDistribution(1e-5, 1, log=True)
    assert param("optimizer.lr=interval(0.1, 0.5)").distribution() == FloatDistribution(0.1, 0.5)
    assert param("trainer.batch_size=tag(int, interval(16, 256))").distribution() == IntDistribution(16, 256)
    assert param("x=range(1, 10, 3)").distribution() == IntDistribution(1, 7, step=3)
    assert param("optimizer.lr=choice(3e-4, 1e-4)").distribution() == CategoricalDistribution([3e-4, 1e-4])
    assert param("optimizer.lr=3e-4,1e-4").grid_values() == [3e-4, 1e-4]
    assert param("optimizer.lr=3e-6").grid_values() == [3e-6]  # one value: a grid of one point
    assert param("optimizer.momentum=range(0.1, 0.5, 0.1)").grid_values() == [0.1, 0.2, 0.3, 0.4]
    assert param("optimizer.partition=canonical,trivial").choices == ["canonical", "trivial"]


def test_log1m_searches_one_minus_the_decay_on_a_log_scale():
    from optuna.distributions import FloatDistribution

    beta = param("optimizer.betas.1=tag(log1m, interval(0.9, 0.9999))")
    assert beta.search_name == "1-optimizer.betas.1"
    u = beta.distribution()
    assert isinstance(u, FloatDistribution) and u.log and (u.low, u.high) == pytest.approx((1e-4, 0.1))
    assert beta.value(0.0019612345, digits=4) == 0.998039  # u rounded to 4 digits, then 1 - u


@pytest.mark.parametrize("text, message", [
    ("optimizer.lr=tag(log, interval(0, 1))", "its low end must be above 0"),
    ("optimizer.beta=tag(log1m, interval(0.5, 1))", "must lie in [0, 1)"),
    ("optimizer.lr=tag(loglog, interval(1, 2))", "has the tag loglog"),
    ("optimizer.lr=interval(2, 1)", "is not a range"),
])
def test_a_bad_search_space_is_one_sentence(text, message):
    with pytest.raises(HooptError, match=message.replace("[", r"\[").replace(")", r"\)").replace("(", r"\(")):
        param(text)


def test_a_continuous_range_cannot_be_a_grid():
    with pytest.raises(HooptError, match="the grid sampler needs a finite set of values"):
        param("optimizer.lr=tag(log, interval(1e-5, 1))").grid_values()


def test_list_elements_are_searched_and_passed_as_the_whole_list():
    from hydra_plugins.hoopt_tuning._space import format_number, mark_list_elements, point_overrides

    config = {"optimizer": {"lr": 0.1, "betas": [0.9, 0.999]}}
    params = [param("optimizer.lr=tag(log, interval(1e-5, 1))"),
              param("optimizer.betas.1=tag(log1m, interval(0, 0.9999))")]
    mark_list_elements(params, config)
    assert [p.list_element for p in params] == [False, True]
    assert params[1].describe()["override"] == "optimizer.betas"
    assert point_overrides(params, {"optimizer.lr": 0.03, "optimizer.betas.1": 0.998}, config) == [
        "optimizer.lr=0.03", "optimizer.betas=[0.9,0.998]"]
    assert format_number(0.0123456789, 4) == "0.01235" and format_number(1.0e-5) == "1e-05"
    with pytest.raises(HooptError, match="beyond the end of optimizer.betas"):
        mark_list_elements([param("optimizer.betas.2=interval(0, 1)")], config)


# -- the sweeper, driven by Hydra with task functions of our own ------------------------------------------------------

def multirun(task, overrides, sweep_dir):
    """``hoopt-train -m <overrides>`` with ``task`` in place of training: Hydra composes hoopt's configs and runs the
    configured sweeper and launcher in this process. Returns what the sweeper returned."""
    runner = SweepTaskFunction()
    runner.calling_file, runner.calling_module = TRAIN_PY, None
    runner.config_path, runner.config_name = "../../configs", "train"
    runner.task_function, runner.temp_dir = task, str(sweep_dir)
    runner.overrides = ["hydra.job.chdir=false", *overrides]  # as hoopt-train (version_base 1.3) runs jobs
    runner.__enter__()  # (its __exit__ would delete the sweep dir)
    return runner.returns


def bowl(cfg):
    """A smooth function of Adam's log(lr), log(1 - beta1), log(1 - beta2), least at lr 0.3, 0.9, 0.999."""
    lr, (b1, b2) = cfg.optimizer.lr, cfg.optimizer.betas
    return math.log10(lr / 0.3) ** 2 + math.log10((1 - b1) / 0.1) ** 2 + math.log10((1 - b2) / 1e-3) ** 2


def load(sweep_dir, name="hoopt"):
    import optuna

    return optuna.load_study(study_name=name, storage=f"sqlite:///{sweep_dir}/study.db")


def states(study):
    return [t.state.name for t in study.trials]


LODO_ADAM = ["experiment=lodo_rosenbrock_tune", "optimizer=adam", "hydra.sweeper.sampler.popsize=8",
             "hydra.sweeper.generations=null"]


def test_an_evolution_strategy_study_keeps_its_trials_in_sqlite_in_the_sweep_dir(tmp_path):
    best = multirun(bowl, [*LODO_ADAM, "hydra.sweeper.n_trials=25"], tmp_path)
    study = load(tmp_path)
    assert states(study) == ["COMPLETE"] * 25
    first_generation = min(t.value for t in study.trials[:9])  # the first trial is drawn before CMA-ES starts
    assert study.best_value == best["hoopt"]["value"] < first_generation / 2
    # the searched variables: log(lr), log(1 - beta1), log(1 - beta2); each job gets the whole betas list
    assert set(study.best_params) == {"optimizer.lr", "1-optimizer.betas.0", "1-optimizer.betas.1"}
    jobs = sorted((p for p in tmp_path.iterdir() if p.is_dir()), key=lambda p: int(p.name.split("_")[0]))
    assert [int(p.name.split("_")[0]) for p in jobs] == list(range(25))
    overrides = list(OmegaConf.load(jobs[0] / ".hydra" / "overrides.yaml"))
    assert sorted(overrides[:3]) == ["experiment=lodo_rosenbrock_tune", "optimizer=adam", "seed=0"]
    assert [o.split("=")[0] for o in overrides[3:]] == ["optimizer.lr", "optimizer.betas"]
    assert OmegaConf.load(jobs[0] / ".hydra" / "config.yaml").optimizer.betas == OmegaConf.create(
        overrides[4].split("=", 1)[1])
    tuning = OmegaConf.load(tmp_path / "tuning.yaml")
    assert tuning.objective.metric == "train/loss" and tuning.objective.reduce == "mean_last"
    assert [p.override for p in tuning.studies[0].params] == ["optimizer.lr", "optimizer.betas", "optimizer.betas"]


def test_a_small_budget_gets_a_population_that_still_evolves_over_generations():
    from hydra_plugins.hoopt_tuning._study import population

    # the paper's 10 generations of 32 once the budget allows it; fewer individuals (never below 4) below that
    assert [population(32, n, 10) for n in (1000, 320, 200, 96, 40, 32, 8)] == [32, 32, 20, 9, 4, 4, 4]
    assert population(2, 8, 10) == 2  # never more than asked for
    assert population(32, 32, None) == 32 and population(None, 32, 10) is None  # generations=null: as given
    for preset, budget, expected in (("lodo_rosenbrock_tune", 320, 32), ("lodo_resnet_tune", 160, 16)):
        sweeper = compose_config([f"experiment={preset}"], hydra=True).hydra.sweeper
        assert (sweeper.n_trials, sweeper.generations) == (budget, 10)
        assert population(sweeper.sampler.popsize, sweeper.n_trials, sweeper.generations) == expected


def test_a_32_trial_preset_study_evolves_generations_of_4(tmp_path, capsys):
    multirun(bowl, ["experiment=lodo_rosenbrock_tune", "optimizer=adam", "hydra.sweeper.n_trials=13"], tmp_path)
    generations = [t.system_attrs.get("cma:generation") for t in load(tmp_path).trials]
    assert generations == [None] + [0] * 4 + [1] * 4 + [2] * 4  # the first trial is drawn before CMA-ES starts
    out = capsys.readouterr().out
    assert "13 trials are fewer than 10 generations of 32" in out and "4 per generation" in out


def test_a_task_that_returns_nothing_is_scored_from_its_run_dir_and_a_failed_one_ranks_last(tmp_path):
    calls = []

    def task(cfg):
        calls.append(cfg.optimizer.lr)
        if len(calls) == 2:
            raise RuntimeError("a bug in some optimizer")
        out = HydraConfig.get().runtime.output_dir
        write_run(out, "completed", [{"step": 200, "epoch": 20, "train/loss": cfg.optimizer.lr}])
        return None

    multirun(task, [*LODO_ADAM, "hydra.sweeper.n_trials=4", "trainer.steps=200"], tmp_path)
    study = load(tmp_path)
    assert states(study) == ["COMPLETE"] * 4 and len(calls) == 4
    values = [t.value for t in study.trials]
    assert values[1] == math.inf and [v for i, v in enumerate(values) if i != 1] == pytest.approx(
        [c for i, c in enumerate(calls) if i != 1])
    assert study.trials[0].user_attrs["run_dir"].startswith(str(tmp_path))


def test_a_killed_study_continues_where_it_stopped(tmp_path):
    seen = []

    def killed_on_the_third_trial(cfg):
        seen.append((HydraConfig.get().job.num, cfg.resume))
        if len(seen) == 3:
            raise KeyboardInterrupt  # what Ctrl-C does in the middle of a trial
        return bowl(cfg)

    with pytest.raises(KeyboardInterrupt):
        multirun(killed_on_the_third_trial, [*LODO_ADAM, "hydra.sweeper.n_trials=5"], tmp_path)
    assert states(load(tmp_path)) == ["COMPLETE", "COMPLETE", "FAIL", "WAITING"]  # the third, queued again
    seen.clear()
    multirun(lambda cfg: seen.append((HydraConfig.get().job.num, cfg.resume)) or bowl(cfg),
             [*LODO_ADAM, "hydra.sweeper.n_trials=5"], tmp_path)
    # the killed trial continues in its own job dir (resume=true: from its checkpoint), then two new trials
    assert seen == [(2, True), (4, False), (5, False)]
    assert states(load(tmp_path)) == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE", "COMPLETE", "COMPLETE"]


def test_a_trial_left_running_by_a_dead_process_is_failed_and_queued_once_its_heartbeat_is_stale(tmp_path):
    import time

    fast = ["hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=1"]
    multirun(bowl, [*LODO_ADAM, "hydra.sweeper.n_trials=1", *fast], tmp_path)
    study = load(tmp_path)
    orphan = study.ask()  # a trial some process took and died with: one heartbeat, never told
    orphan.set_user_attr("job_num", 1)
    study._storage.record_heartbeat(orphan._trial_id)
    time.sleep(2.5)
    nums = []
    multirun(lambda cfg: nums.append((HydraConfig.get().job.num, cfg.resume)) or bowl(cfg),
             [*LODO_ADAM, "hydra.sweeper.n_trials=2", *fast], tmp_path)
    assert states(load(tmp_path)) == ["COMPLETE", "FAIL", "COMPLETE"] and nums == [(1, True)]


def test_a_value_given_on_the_command_line_leaves_the_search(tmp_path):
    multirun(bowl, [*LODO_ADAM, "hydra.sweeper.n_trials=2", "optimizer.lr=0.3"], tmp_path)
    assert set(load(tmp_path).trials[0].params) == {"1-optimizer.betas.0", "1-optimizer.betas.1"}
    multirun(bowl, [*LODO_ADAM, "hydra.sweeper.n_trials=2", "optimizer.betas=[0.9,0.99]"], tmp_path / "b")
    assert set(load(tmp_path / "b").trials[0].params) == {"optimizer.lr"}


def test_sampler_options_optuna_does_not_take_are_one_sentence():
    from hydra_plugins.hoopt_tuning._study import StudyPlan
    from hydra_plugins.hoopt_tuning.sweeper import TuningSweeper

    plan = StudyPlan("s", [], [param("optimizer.lr=tag(log, interval(1e-5, 1))")], {"optimizer": {"lr": 0.01}})
    TuningSweeper(sampler={"name": "cmaes", "popsize": 4})._sampler(plan)
    with pytest.raises(HooptError, match="has an option the tpe sampler does not take"):
        TuningSweeper(sampler={"name": "tpe", "popsize": 4})._sampler(plan)


def test_a_study_per_optimizer_each_with_its_space_and_the_grid_visited_once(tmp_path):
    seen = {}

    def task(cfg):
        point = (cfg.optimizer.name, cfg.optimizer.get("lr"), cfg.optimizer.get("damping"),
                 cfg.optimizer.get("lambda_int"))
        seen[point] = seen.get(point, 0) + 1
        return len(seen)

    multirun(task, ["experiment=ns_mlp_tune", "optimizer=adam,newton_summary"], tmp_path)
    adam, summary = load(tmp_path, "hoopt optimizer=adam"), load(tmp_path, "hoopt optimizer=newton_summary")
    assert len(adam.trials) == 2 and len(summary.trials) == 12 and set(seen.values()) == {1}
    assert {p[1] for p in seen if p[0] == "adam"} == {3e-4, 1e-4}
    assert {(p[2], p[3]) for p in seen if p[0] == "newton_summary"} == {
        (d, i) for d in (0.03, 0.1, 0.3, 1.0) for i in (0.3, 1.0, 3.0)}
    assert {p[2] for p in seen if p[0] == "adam"} == {None}  # Adam's study searches only its own space


def test_a_killed_grid_search_still_visits_every_point_once(tmp_path):
    calls = []

    def task(cfg):
        calls.append((cfg.optimizer.damping, cfg.optimizer.lambda_int))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return cfg.optimizer.damping * cfg.optimizer.lambda_int

    grid = ["experiment=ns_mlp_tune", "optimizer=newton_summary"]
    with pytest.raises(KeyboardInterrupt):
        multirun(task, grid, tmp_path)
    multirun(task, grid, tmp_path)
    trials = load(tmp_path).trials
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    points = {(t.params["optimizer.damping"], t.params["optimizer.lambda_int"]) for t in complete}
    assert len(complete) == 12 and points == {(d, i) for d in (0.03, 0.1, 0.3, 1.0) for i in (0.3, 1.0, 3.0)}
    assert calls[3] == calls[2]  # the interrupted point first, in its own job dir


@pytest.mark.parametrize("overrides, message", [
    (["experiment=lodo_rosenbrock_tune", "optimizer=adam", "seed=0,1"], "seed cannot be swept"),
    (["experiment=ns_mlp_tune", "optimizer=sgd"], "hydra.sweeper.spaces.optimizer has no search space for "
                                                   "optimizer=sgd; add hydra.sweeper.spaces.optimizer.sgd, or choose "
                                                   "one of: adam, kfac, newton_summary."),
    (["hydra/sweeper=tune_grid", "optimizer.lr=interval(0.1, 1)"], "the grid sampler needs a finite set of values"),
    (["hydra/sweeper=tune_tpe", "optimizer.lrr=interval(0.1, 1)"], "optimizer.lrr is not a key of the config"),
    (["hydra/sweeper=tune_tpe", "hydra.sweeper.n_trials=null", "optimizer.lr=interval(0.1, 1)"],
     "the tpe sampler needs a number of trials"),
    (["hydra/sweeper=tune_tpe"], "there is nothing to search"),
    (["experiment=lodo_rosenbrock_tune", "optimizer=adam", "hydra.sweeper.generations=0"],
     "hydra.sweeper.generations=0 is not a whole number >= 1 (or null)"),
    (["experiment=lodo_rosenbrock_tune", "optimizer=adam", "hydra.sweeper.sampler.popsize=1"],
     "hydra.sweeper.sampler.popsize=1 is not a whole number >= 2 (or null)"),
])
def test_mistakes_in_a_study_are_one_sentence(tmp_path, capsys, overrides, message):
    with pytest.raises(SystemExit) as stop:
        multirun(bowl, overrides, tmp_path / "sweep")
    assert stop.value.code == 2
    assert message in capsys.readouterr().err.replace("\n", " ")
    # refused before anything is written (the test harness makes the sweep dir itself; hoopt-train -m does not)
    assert [p for p in tmp_path.rglob("*") if not p.is_dir()] == []


def test_a_misspelt_metric_stops_the_study_after_its_first_trial(tmp_path, capsys):
    def task(cfg):
        write_run(HydraConfig.get().runtime.output_dir, "completed", [{"step": 1, "epoch": 1, "val/loss": 1.0}])

    with pytest.raises(SystemExit):
        multirun(task, ["hydra/sweeper=tune_tpe", "optimizer.lr=interval(0.1, 1)", "++tune.metric=val/los"], tmp_path)
    assert "tune.metric=val/los is never logged by the run in" in capsys.readouterr().err
    assert len(load(tmp_path).trials) == 1


# -- hoopt-report --best-by -----------------------------------------------------------------------------------------

def recorded(cfg):
    """A stand-in for training: the run dir a completed run leaves, its loss a function of the values searched."""
    out = HydraConfig.get().runtime.output_dir
    loss = cfg.optimizer.lr if cfg.optimizer.name != "adam" else bowl(cfg)
    write_run(out, "completed", [{"step": s, "epoch": s // 10, "train/loss": loss + (200 - s) * 1e-3,
                                  "val/acc": 1 - loss} for s in range(10, 201, 10)])


def test_best_by_writes_the_chosen_overrides_and_the_final_seeds_command_per_optimizer(tmp_path):
    from hoopt.runner.reports.best import best_by

    multirun(recorded, ["experiment=lodo_rosenbrock_tune", "optimizer=adam,sgd", "hydra.sweeper.n_trials=6",
                        "hydra.sweeper.sampler.popsize=4"], tmp_path / "sweep")
    record = best_by([str(tmp_path / "sweep")], str(tmp_path / "out"), "train/loss")
    assert list(record["studies"]) == ["optimizer=adam", "optimizer=sgd"]
    adam = record["studies"]["optimizer=adam"]
    study = load(tmp_path / "sweep", "hoopt optimizer=adam")
    assert adam["objective"] == pytest.approx(study.best_value) and adam["trial"] == study.best_trial.number
    assert adam["overrides"] == study.best_trial.user_attrs["overrides"]
    args = shlex.split(adam["command"])
    assert args[:3] == ["hoopt-train", "-m", "seed=0,1,2,3,4,5,6,7"]
    assert "experiment=lodo_rosenbrock" in args and "experiment=lodo_rosenbrock_tune" not in args
    assert args[-1] == f"hydra.sweep.dir={tmp_path / 'sweep'}-final/optimizer=adam"
    # the command composes to the chosen values, on the preset the study tuned for
    cfg = compose_config([a for a in args[2:-1] if not a.startswith("seed=")] + ["seed=0"])
    betas = next(o for o in adam["overrides"] if o.startswith("optimizer.betas="))
    assert list(cfg.optimizer.betas) == json.loads(betas.split("=", 1)[1])
    assert cfg.trainer.steps == 200 and cfg.optimizer.name == "adam"
    assert all((tmp_path / "out" / f).stat().st_size > 0 for e in record["studies"].values() for f in e["figures"])
    assert OmegaConf.load(tmp_path / "out" / "best.yaml").studies["optimizer=sgd"].trials.total == 6
    assert "| optimizer=sgd |" in (tmp_path / "out" / "best.md").read_text()


def test_best_by_another_metric_and_a_basic_grid(tmp_path):
    from hoopt.runner.reports.best import best_by

    multirun(recorded, ["optimizer=sgd", "optimizer.lr=0.1,0.3,0.03", "seed=5"], tmp_path / "grid")  # basic sweeper
    record = best_by([str(tmp_path / "grid")], str(tmp_path / "out"), "val/acc")
    entry = record["studies"]["mlp/sgd"]
    assert record["mode"] == "max" and entry["overrides"] == ["optimizer.lr=0.03"]
    assert shlex.split(entry["command"])[:3] == ["hoopt-train", "-m", "seed=0,1,2,3,4"]


def test_best_by_with_nothing_finished_says_so(tmp_path):
    from hoopt.runner.reports.best import best_by

    def diverged(cfg):
        write_run(HydraConfig.get().runtime.output_dir, "diverged", [])

    multirun(diverged, ["optimizer=sgd", "optimizer.lr=0.1,0.3"], tmp_path / "grid")
    entry = best_by([str(tmp_path / "grid")], str(tmp_path / "out"), "val/loss")["studies"]["mlp/sgd"]
    assert entry["command"] is None and entry["trials"]["diverged"] == 2


def test_report_flags_that_need_best_by(tmp_path, capsys):
    from hoopt.runner.cli.report import main

    with pytest.raises(SystemExit) as stop:
        main([str(tmp_path), "--mode", "max"])
    assert stop.value.code == 2 and "go with --best-by" in capsys.readouterr().err


# -- presets and packaging ------------------------------------------------------------------------------------------

TUNE_PRESETS = sorted(f[:-5] for f in os.listdir(os.path.join(CONFIG_DIR, "experiment")) if f.endswith("_tune.yaml"))


def test_the_papers_get_their_tuning_presets():
    assert TUNE_PRESETS == ["lodo_image_tune", "lodo_quadratic_tune", "lodo_resnet_tune", "lodo_rosenbrock_tune",
                            "ns_bigmlp_tune", "ns_lenet_tune", "ns_mlp_tune", "ns_vgg_tune"]


@pytest.mark.parametrize("name", TUNE_PRESETS)
def test_every_tuning_preset_has_a_space_for_every_optimizer_it_tunes(name):
    from hydra_plugins.hoopt_tuning._space import lookup

    cfg = compose_config([f"experiment={name}"], hydra=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.hoopt_tuning.sweeper.TuningSweeper"
    assert "," not in str(sweeper.params.seed)
    tune_settings(cfg)
    assert cfg.tune.final_experiment == name[:-len("_tune")]
    for optimizer in str(sweeper.params.optimizer).split(","):
        space = sweeper.spaces.optimizer[optimizer]
        composed = OmegaConf.to_container(compose_config([f"experiment={name}", f"optimizer={optimizer}"]),
                                          resolve=True)
        for key, spec in space.items():
            value = lookup(composed, key)  # every searched key exists in that optimizer's config
            assert isinstance(value, (int, float)), (optimizer, key)
            if "log1m" in str(spec):
                assert 0 <= value < 1, (optimizer, key)


def test_the_lodo_preset_searches_adams_log_lr_and_both_log_one_minus_betas():
    space = compose_config(["experiment=lodo_rosenbrock_tune"], hydra=True).hydra.sweeper.spaces.optimizer.adam
    assert dict(space) == {"optimizer.lr": "tag(log, interval(1e-5, 10))",
                           "optimizer.betas.0": "tag(log1m, interval(0, 0.9999))",
                           "optimizer.betas.1": "tag(log1m, interval(0, 0.99999))"}
    sweeper = compose_config(["experiment=lodo_rosenbrock_tune"], hydra=True).hydra.sweeper
    assert (sweeper.sampler.name, sweeper.sampler.popsize, sweeper.n_trials) == ("cmaes", 32, 320)


def test_hydra_finds_the_sweeper_from_any_folder_without_importing_optuna(tmp_path):
    """Hydra imports every module of hydra_plugins whenever any Hydra app starts: ours must load on Hydra's terms,
    quickly, next to the launchers."""
    code = ("import sys, warnings; warnings.simplefilter('error');"
            "from hydra.core.plugins import Plugins; from hydra.plugins.sweeper import Sweeper;"
            "from hydra.plugins.launcher import Launcher; p = Plugins.instance();"
            "print(sorted(c.__name__ for c in p.discover(Sweeper)), sorted(c.__name__ for c in p.discover(Launcher)),"
            "'optuna' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.split("] ")[0] == "['BasicSweeper', 'TuningSweeper'"
    assert "JoblibLauncher" in out.stdout and out.stdout.strip().endswith("False False")
    assert out.stderr == ""
