"""Tuning through the console scripts, as a user runs it: hoopt-train -m with a tuning preset, the study in SQLite
in the sweep dir, a killed study resumed, hoopt-report --best-by and the final-seeds command it writes, which runs."""

import glob
import json
import os
import shlex
import signal
import subprocess
import time

import pytest
from omegaconf import OmegaConf

from conftest import BIN, SUPPORT, read_metrics, read_status, run_cli

QUIET = ["trainer.progress=false"]
ROSENBROCK_ADAM = ["-m", "experiment=lodo_rosenbrock_tune", "optimizer=adam", *QUIET]
PAPER_ADAM = 5.342e-5  # LODO paper, Table 8: Adam's mean loss over steps 180-200 on Rosenbrock


def study(sweep, name="hoopt"):
    import optuna

    return optuna.load_study(study_name=name, storage=f"sqlite:///{sweep}/study.db")


def last_tenth(run_dir):
    from hoopt.runner.reports.measures import mean_loss_last_fraction

    return mean_loss_last_fraction(read_metrics(run_dir), 200)


def best_yaml(sweep, tmp_path, metric="train/loss"):
    proc = run_cli(["--best-by", metric, str(sweep), "--out", str(tmp_path / "best")], cwd=tmp_path,
                   script="hoopt-report")
    return OmegaConf.to_container(OmegaConf.load(tmp_path / "best" / "best.yaml")), proc.stdout


def run_command(command, cwd, timeout=900):
    """best.yaml's command, exactly as written, in a shell-like split."""
    args = shlex.split(command)
    assert args[0] == "hoopt-train"
    return run_cli(args[1:], cwd=cwd, timeout=timeout)


def test_a_rosenbrock_study_then_the_final_seeds_it_chose(tmp_path):
    sweep = tmp_path / "tune"
    run_cli([*ROSENBROCK_ADAM, "hydra.sweeper.n_trials=3", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    trials = study(sweep).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3 and (sweep / "study.db").is_file()
    # each trial's value is the LODO paper's measure of its run
    for trial in trials:
        assert trial.value == pytest.approx(last_tenth(trial.user_attrs["run_dir"]))
    record, printed = best_yaml(sweep, tmp_path)
    entry = record["studies"]["rosenbrock/adam"]
    assert entry["objective"] == pytest.approx(min(t.value for t in trials)) and "| rosenbrock/adam |" in printed
    assert entry["overrides"][0].startswith("optimizer.lr=") and entry["overrides"][1].startswith("optimizer.betas=[")
    run_command(entry["command"], tmp_path)
    finals = sorted(glob.glob(os.path.join(entry["final_sweep_dir"], "*_*")))
    assert len(finals) == 8 and all(read_status(d)["status"] == "completed" for d in finals)
    assert all(last_tenth(d) == pytest.approx(entry["objective"]) for d in finals)  # Rosenbrock: no seed in it
    assert {OmegaConf.load(os.path.join(d, ".hydra", "config.yaml")).seed for d in finals} == set(range(8))


def test_hoopt_train_returns_the_objective_to_the_sweeper(tmp_path):
    """The job's own return value, not the sweeper's reading of the run dir (runner/cli/train.py returns
    objective_value from hydra_main)."""
    sweep = tmp_path / "tune"
    run_cli([*ROSENBROCK_ADAM, "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert study(sweep).trials[0].user_attrs["objective_from"] == "returned"


def test_the_newton_summary_grid_preset_runs_on_digits_when_shortened(tmp_path):
    sweep = tmp_path / "tune"
    run_cli(["-m", "experiment=ns_mlp_tune", "dataset=digits", "trainer.epochs=2", "hydra.sweeper.n_trials=2",
             *QUIET, f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    for optimizer in ("adam", "kfac", "newton_summary"):
        trials = study(sweep, f"hoopt optimizer={optimizer}").trials
        assert [t.state.name for t in trials] == ["COMPLETE"] * 2
        assert all(read_status(t.user_attrs["run_dir"])["status"] == "completed" for t in trials)
    record, _ = best_yaml(sweep, tmp_path, "val/loss")
    assert list(record["studies"]) == ["optimizer=adam", "optimizer=kfac", "optimizer=newton_summary"]
    command = shlex.split(record["studies"]["optimizer=kfac"]["command"])
    assert command[2] == "seed=571677914,421146319,505702709,70478166,358472055"
    assert {"experiment=ns_mlp", "dataset=digits", "trainer.epochs=2", "optimizer=kfac"} <= set(command)


def test_a_bad_study_is_one_sentence_with_exit_code_2(tmp_path):
    proc = run_cli([*ROSENBROCK_ADAM, "seed=0,1", f"hydra.sweep.dir={tmp_path / 's'}"], cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("hoopt: error: a tuning study scores each point with one")


def job_states(sweep):
    states = []
    for path in glob.glob(os.path.join(sweep, "*_*", "status.json")):
        try:
            with open(path) as f:
                states.append(json.load(f)["status"])
        except (OSError, ValueError):
            pass
    return states


@pytest.mark.slow
def test_the_done_when_study_is_killed_and_continues_where_it_stopped(tmp_path):
    """hoopt-train -m experiment=lodo_rosenbrock_tune optimizer=adam hydra.sweeper.n_trials=32, killed (SIGKILL to
    its process group) while its fourth trial runs, then the same command again."""
    sweep = tmp_path / "tune"
    args = [*ROSENBROCK_ADAM, "hydra.sweeper.n_trials=32", f"hydra.sweep.dir={sweep}",
            "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=2"]
    env = {**os.environ, "PYTHONPATH": SUPPORT, "HYDRA_FULL_ERROR": "0"}
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen([os.path.join(BIN, "hoopt-train"), *args], cwd=tmp_path, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        started = time.time()
        while time.time() - started < 300:  # three trials done and the next one training
            states = job_states(sweep)
            if states.count("completed") >= 3 and "running" in states:
                break
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = study(sweep).trials
    complete_before = [t.number for t in before if t.state.name == "COMPLETE"]
    assert len(complete_before) >= 3 and before[-1].state.name == "RUNNING"
    time.sleep(2.5)  # the killed trial's heartbeat goes stale
    run_cli(args[:], cwd=tmp_path)
    after = study(sweep).trials
    assert sum(t.state.name == "COMPLETE" for t in after) == 32
    assert [t.number for t in after if t.state.name == "FAIL"] == [before[-1].number]
    assert all(after[n].value == before[n].value for n in complete_before)  # finished trials were not re-run
    retried = next(t for t in after if t.user_attrs.get("job_num") == before[-1].number and t.state.name == "COMPLETE")
    assert os.path.basename(retried.user_attrs["run_dir"]).startswith(f"{before[-1].number}_")
    assert len(glob.glob(str(sweep / "*_*"))) == 32  # the killed trial finished in its own job dir
    record, _ = best_yaml(sweep, tmp_path)
    assert record["studies"]["rosenbrock/adam"]["trials"]["completed"] == 32


@pytest.mark.slow
def test_the_papers_evolution_strategy_tunes_adam_on_rosenbrock_within_2x_of_the_paper(tmp_path):
    """The preset's whole study (10 generations of 32, as the LODO paper), then the chosen values' final seeds."""
    sweep = tmp_path / "tune"
    run_cli([*ROSENBROCK_ADAM, f"hydra.sweep.dir={sweep}"], cwd=tmp_path, timeout=1800)
    record, _ = best_yaml(sweep, tmp_path)
    entry = record["studies"]["rosenbrock/adam"]
    assert entry["trials"]["total"] == 320
    assert entry["objective"] <= 2 * PAPER_ADAM
    run_command(entry["command"], tmp_path)
    finals = glob.glob(os.path.join(entry["final_sweep_dir"], "*_*"))
    assert len(finals) == 8 and all(last_tenth(d) <= 2 * PAPER_ADAM for d in finals)


def test_the_tuning_benchmark_samples_and_scores_as_a_tuning_study_does(tmp_path):
    """hoopt-bench tuning runs studies in memory, without run dirs: its sampler must propose the points
    hoopt-train -m proposes, and score each exactly as the job's objective does."""
    import torch

    from hoopt.runner.benchmarks.tuning import Study, run_study

    sweep = tmp_path / "tune"
    run_cli([*ROSENBROCK_ADAM, "hydra.sweeper.n_trials=6", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    trials = study(sweep).trials
    bench, popsize = run_study(Study("lodo_rosenbrock_tune", "adam", [], torch.device("cpu")), 0, 6)
    assert popsize == 4
    assert [t.params for t in bench.trials] == [t.params for t in trials]
    assert [t.value for t in bench.trials] == [t.value for t in trials]
    assert len({t.value for t in trials}) == 6
