"""Sweeps through the console script and ``hoopt-report`` over them: runs grouped by identity with the seed set aside,
every run counted by status, only completed runs in the means, and the papers' measures for synthetic objectives."""

import contextlib
import csv
import io
import os
import statistics

import pytest
from omegaconf import OmegaConf

from conftest import read_metrics, read_status, run_cli, tensorboard_tags

COMMON = ["dataset=digits", "trainer.steps=20", "+model.kwargs.hidden=[64,32]", "trainer.progress=false"]
OPTIMIZERS = ("adam", "newton_summary", "kfac", "lodo")


@pytest.fixture(scope="module")
def sweep_base(tmp_path_factory):
    """sweep/: 2 seeds x 4 optimizers. extra/: an Adam job of the same identity stopped after its first epoch like
    a killed job (debug=interrupt), and one whose settings Adam rejects, so it fails before training."""
    base = tmp_path_factory.mktemp("sweep")
    run_cli(["-m", "seed=1,2", f"optimizer={','.join(OPTIMIZERS)}", *COMMON, f"hydra.sweep.dir={base / 'sweep'}"],
            cwd=base)
    run_cli(["-m", "seed=3", "optimizer=adam", "optimizer.betas=[0.9,0.999],[2.0,0.999]", "debug=interrupt",
             "trainer.device=cpu", *COMMON, f"hydra.sweep.dir={base / 'extra'}"], cwd=base)
    return base


def report(paths, out, *extra):
    """hoopt-report in this process (its exit codes and errors are tested through the script below): (printed
    text, summary.csv rows by group, summary.md)."""
    from hoopt.runner.cli.report import main

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        main([*map(str, paths), "--out", str(out), *extra])
    rows = {r["group"]: r for r in csv.DictReader(open(out / "summary.csv"))}
    return printed.getvalue(), rows, (out / "summary.md").read_text()


def finals(run_dir, tag):
    return [m for m in read_metrics(run_dir) if tag in m][-1][tag]


def test_multirun_writes_readable_job_dirs(sweep_base):
    names = sorted(p.name for p in (sweep_base / "sweep").iterdir() if p.is_dir())
    assert names[0] == "0_+model.kwargs.hidden=[64,32],dataset=digits,optimizer=adam,seed=1,trainer.steps=20"
    assert len(names) == 8 and all(read_status(sweep_base / "sweep" / n)["status"] == "completed" for n in names)
    # execution details (the device, the debug aid) stay out of the folder names
    extra = sorted(p.name for p in (sweep_base / "extra").iterdir() if p.is_dir())
    assert extra == [f"{i}_+model.kwargs.hidden=[64,32],dataset=digits,optimizer.betas=[{b},0.999],optimizer=adam,"
                     f"seed=3,trainer.steps=20" for i, b in enumerate(("0.9", "2.0"))]


def test_seeds_form_one_group_per_optimizer_even_where_the_optimizer_derives_its_own_seed(sweep_base, tmp_path):
    # newton_summary, kfac and lodo carry optimizer.seed: ${oc.select:seed,0}, which resolves per seed
    job = next(p for p in (sweep_base / "sweep").iterdir() if "newton_summary" in p.name)
    assert "seed: ${oc.select:seed,0}" in (job / ".hydra" / "config.yaml").read_text()
    printed, rows, _ = report([sweep_base / "sweep"], tmp_path / "report")
    assert "8 runs (8 completed, 0 diverged, 0 failed, 0 unfinished) in 4 groups" in printed
    assert set(rows) == {f"optimizer={o}" for o in OPTIMIZERS}
    assert all(r["runs"] == "2" and r["completed"] == "2" for r in rows.values())


def test_report_table_matches_the_metrics_files(sweep_base, tmp_path):
    out = tmp_path / "report"
    _, rows, markdown = report([sweep_base / "sweep"], out)
    for figure in ("train_epoch_loss_vs_epoch.png", "train_epoch_loss_vs_wall.png", "val_acc_vs_epoch.png",
                   "val_acc_vs_wall.png"):
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for optimizer in OPTIMIZERS:
        runs = [p for p in (sweep_base / "sweep").iterdir() if f"optimizer={optimizer}," in p.name]
        row = rows[f"optimizer={optimizer}"]
        losses = [finals(r, "train/epoch_loss") for r in runs]
        assert float(row["final_train_loss"]) == pytest.approx(statistics.fmean(losses))
        assert float(row["final_train_loss_sd"]) == pytest.approx(statistics.stdev(losses))
        assert float(row["final_test_acc"]) == pytest.approx(statistics.fmean(finals(r, "test/acc") for r in runs))
        best = [max(m["val/acc"] for m in read_metrics(r) if "val/acc" in m) for r in runs]
        assert float(row["best_val_acc"]) == pytest.approx(statistics.fmean(best))
    assert "time_to_target_s" not in rows["optimizer=adam"]  # only with --target-loss
    assert "| optimizer=adam | 2 | 2 | 0 | 0 | 0 | " in markdown and " ± " in markdown


def test_every_run_is_counted_by_status_and_only_completed_runs_enter_the_means(sweep_base, tmp_path):
    printed, rows, markdown = report([sweep_base], tmp_path / "report", "--target-loss", "100")
    assert "10 runs (8 completed, 0 diverged, 1 failed, 1 unfinished) in 5 groups" in printed
    adam = rows["optimizer=adam"]  # the two seeds of the sweep and the job killed after its first epoch
    assert (adam["runs"], adam["completed"], adam["diverged"], adam["failed"], adam["unfinished"]) == \
        ("3", "2", "0", "0", "1")
    completed = [p for p in (sweep_base / "sweep").iterdir() if "optimizer=adam," in p.name]
    assert float(adam["final_train_loss"]) == pytest.approx(statistics.fmean(finals(r, "train/epoch_loss")
                                                                             for r in completed))
    assert adam["target_reached"] == "2/2"  # out of the completed runs
    assert "| optimizer=adam | 3 | 2 | 0 | 0 | 1 | " in markdown
    (rejected,) = [r for label, r in rows.items() if "optimizer.betas=[2.0,0.999]" in label]
    assert (rejected["runs"], rejected["completed"], rejected["failed"], rejected["final_train_loss"]) == \
        ("1", "0", "1", "")
    failed = next(p for p in (sweep_base / "extra").iterdir() if p.name.startswith("1_"))
    assert not (failed / "metrics.jsonl").exists()  # failed before training, and still in the table
    lines = markdown.split("Runs not in the means:")[1]
    assert f"extra/{failed.name} | failed | " in lines and "Invalid beta parameter" in lines
    assert "| unfinished | epoch 1, step 12 |" in lines


def test_a_sweep_job_that_left_no_record_is_still_counted(sweep_base, tmp_path):
    """A job refused before it wrote anything leaves only its empty folder beside the sweep's multirun.yaml."""
    import shutil

    from hoopt.runner.reports.runs import UNRECORDED, find_run_dirs, group_runs, load_run

    sweep = tmp_path / "sweep"
    first = next(p for p in (sweep_base / "sweep").iterdir() if p.name.startswith("0_"))
    shutil.copytree(first, sweep / first.name)
    shutil.copy(sweep_base / "sweep" / "multirun.yaml", sweep / "multirun.yaml")
    (sweep / "1_optimizer=adam,seed=9").mkdir()
    (tmp_path / "not_a_sweep" / "2_x").mkdir(parents=True)  # an empty numbered folder elsewhere is no run
    runs = [load_run(p) for p in find_run_dirs([str(tmp_path)])]
    groups = group_runs(runs)
    assert sorted(len(v) for v in groups.values()) == [1, 1]
    (unrecorded,) = groups[UNRECORDED]
    assert unrecorded.status == "failed" and "refused before it started" in unrecorded.message


def test_a_diverging_job_does_not_stop_the_sweep_and_is_reported(tmp_path):
    sweep = tmp_path / "div"
    run_cli(["-m", "model=noisy_quadratic", "optimizer=sgd", "optimizer.lr=0.5,10", "seed=1,2", "trainer.steps=400",
             "trainer.progress=false", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    statuses = {p.name: read_status(p)["status"] for p in sweep.iterdir() if p.is_dir()}
    assert sorted(statuses.values()) == ["completed", "completed", "diverged", "diverged"]
    out = tmp_path / "report"
    _, rows, markdown = report([sweep], out)
    assert rows["optimizer.lr=10"]["diverged"] == "2" and rows["optimizer.lr=10"]["completed"] == "0"
    assert rows["optimizer.lr=10"]["last10pct_loss"] == ""  # no completed run, no mean
    assert rows["optimizer.lr=0.5"]["completed"] == "2"
    # the noisy bowl's reference: the Newton-optimal loss, 7.41 for the paper's bowl
    assert float(rows["optimizer.lr=0.5"]["paper_value"]) == pytest.approx(7.41, abs=0.01)
    assert rows["optimizer.lr=0.5"]["paper_source"] == "Newton optimum"
    classification = {"final_test_acc", "final_val_acc", "final_train_loss", "time_to_target_s"}
    assert not classification & set(rows["optimizer.lr=0.5"])
    for figure in ("train_loss_vs_step.png", "eval_gap_vs_step.png", "eval_gap_vs_wall.png"):
        assert (out / figure).exists()
    assert not list(out.glob("*_vs_epoch.png"))  # synthetic objectives are measured in steps


def test_rosenbrock_table_has_the_papers_measure_beside_the_papers_values(tmp_path):
    sweep = tmp_path / "rb"
    run_cli(["-m", "experiment=lodo_rosenbrock", "seed=0,1", "optimizer=adam,lodo", "trainer.progress=false",
             f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    _, rows, markdown = report([sweep], tmp_path / "report")
    assert set(rows) == {"optimizer=adam", "optimizer=lodo"}
    for optimizer, paper in (("adam", 5.342e-5), ("lodo", 1.040e-3)):
        runs = [p for p in sweep.iterdir() if f"optimizer={optimizer}," in p.name]
        measures = []
        for run in runs:  # the mean training loss over steps 181-200 (logger.log_every=1 in this experiment)
            losses = [m["train/loss"] for m in read_metrics(run) if "train/loss" in m and m["step"] > 180]
            assert len(losses) == 20
            measures.append(statistics.fmean(losses))
        row = rows[f"optimizer={optimizer}"]
        assert float(row["last10pct_loss"]) == pytest.approx(statistics.fmean(measures))
        assert float(row["last10pct_loss_sd"]) == pytest.approx(statistics.stdev(measures), abs=1e-12)
        assert float(row["paper_value"]) == paper and row["paper_source"] == "LODO paper, Table 8"
    assert "mean loss, last 10% of steps" in markdown and "final test acc" not in markdown
    _, with_target, _ = report([sweep], tmp_path / "targeted", "--target-loss", "0.01")
    assert with_target["optimizer=adam"]["target_reached"] == "2/2"


def test_hparams_are_in_each_runs_own_event_file_with_a_readable_trial_name(sweep_base):
    from tensorboard.plugins.hparams import plugin_data_pb2

    job = next(p for p in (sweep_base / "sweep").iterdir() if p.name.startswith("1_"))
    content = tensorboard_tags(str(job)).PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["optimizer.name"].string_value == "newton_summary"
    assert start.hparams["seed"].number_value == 1
    assert start.group_name == (f"newton_summary seed=1 · +model.kwargs.hidden=[64,32],dataset=digits,"
                                f"trainer.steps=20 · sweep#1")
    assert [d for d in job.iterdir() if d.is_dir() and d.name != ".hydra"] == []  # no separate sub-run


def test_mean_loss_over_the_last_tenth_weights_each_logging_interval_by_its_steps():
    from hoopt.runner.reports.measures import mean_loss_last_fraction

    every_step = [{"step": s, "train/loss": float(s)} for s in range(1, 201)]
    assert mean_loss_last_fraction(every_step, 200) == pytest.approx(statistics.fmean(range(181, 201)))
    # train/loss at step s is the mean over the interval since the previous record
    tens = [{"step": s, "train/loss": statistics.fmean(range(s - 9, s + 1))} for s in range(10, 201, 10)]
    assert mean_loss_last_fraction(tens, 200) == pytest.approx(statistics.fmean(range(181, 201)))
    # an interval straddling the window counts for the steps it has inside it
    thirties = [{"step": s, "train/loss": float(s)} for s in (150, 180, 210)]
    assert mean_loss_last_fraction(thirties, 210) == pytest.approx(210.0)
    assert mean_loss_last_fraction([], 200) is None


def test_seed_derived_values_are_found_in_the_runs_own_config():
    from hoopt.runner.reports.runs import seed_derived_keys

    config = OmegaConf.create({"seed": 7, "optimizer": {"seed": "${oc.select:seed,0}", "lr": 0.1},
                               "model": {"kwargs": {"seed": 3}}, "other": {"copy": "${optimizer.seed}"}})
    assert seed_derived_keys(config) == {"seed", "optimizer.seed", "other.copy"}
    config.optimizer.seed = 5  # typed on the command line: a choice, not the seed
    assert seed_derived_keys(config) == {"seed"}


def test_report_refuses_a_folder_without_runs(tmp_path):
    proc = run_cli([str(tmp_path)], cwd=tmp_path, script="hoopt-report", check=False)
    assert proc.returncode == 2 and "no runs" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert os.listdir(tmp_path) == []
