"""Sweeps through the console script, the report over them, and the HParams data in each run's events."""

import csv
import json
import statistics

import pytest

from conftest import read_metrics, read_status, run_cli, tensorboard_tags


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("sweep")
    run_cli(["-m", "seed=1,2", "optimizer=adam,sgd", "dataset=digits", "trainer.epochs=2", "trainer.progress=false",
             f"hydra.sweep.dir={base / 'sweep'}"], cwd=base)
    return base / "sweep"


def test_multirun_writes_readable_job_dirs(sweep_dir):
    names = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir())
    assert names == ["0_dataset=digits,optimizer=adam,seed=1,trainer.epochs=2",
                     "1_dataset=digits,optimizer=sgd,seed=1,trainer.epochs=2",
                     "2_dataset=digits,optimizer=adam,seed=2,trainer.epochs=2",
                     "3_dataset=digits,optimizer=sgd,seed=2,trainer.epochs=2"]
    assert all(read_status(sweep_dir / n)["status"] == "completed" for n in names)


def test_report_table_matches_the_metrics_files(sweep_dir, tmp_path):
    out = tmp_path / "report"
    proc = run_cli([str(sweep_dir), "--out", str(out), "--target-loss", "5"], cwd=tmp_path, script="hoopt-report")
    assert "4 runs in 2 groups" in proc.stdout
    for figure in ("train_epoch_loss_vs_epoch.png", "train_epoch_loss_vs_wall.png", "val_acc_vs_epoch.png",
                   "val_acc_vs_wall.png"):
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = {r["group"]: r for r in csv.DictReader(open(out / "summary.csv"))}
    assert set(rows) == {"optimizer=adam", "optimizer=sgd"}
    for optimizer in ("adam", "sgd"):
        runs = [p for p in sweep_dir.iterdir() if f"optimizer={optimizer}," in p.name]
        finals = [[m for m in read_metrics(r) if "train/epoch_loss" in m][-1] for r in runs]
        row = rows[f"optimizer={optimizer}"]
        assert int(row["runs"]) == 2 and int(row["diverged"]) == 0
        assert float(row["final_train_loss"]) == pytest.approx(statistics.fmean(f["train/epoch_loss"] for f in finals))
        assert float(row["final_test_acc"]) == pytest.approx(statistics.fmean(f["test/acc"] for f in finals))
        assert float(row["final_train_loss_sd"]) == pytest.approx(statistics.stdev(f["train/epoch_loss"] for f in finals))
    assert "| optimizer=adam | 2 | 0 |" in (out / "summary.md").read_text()


def test_hparams_are_in_each_runs_own_event_file(sweep_dir):
    from tensorboard.plugins.hparams import plugin_data_pb2

    job = next(p for p in sweep_dir.iterdir() if p.name.startswith("1_"))
    acc = tensorboard_tags(str(job))
    content = acc.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(content)
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["optimizer.name"].string_value == "sgd"
    assert start.hparams["seed"].number_value == 1
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert "test/acc" in {m.name.tag for m in experiment.metric_infos}
    assert [d for d in job.iterdir() if d.is_dir() and d.name != ".hydra"] == []  # no separate sub-run


def test_a_diverging_job_does_not_stop_the_sweep_and_is_reported(tmp_path):
    sweep = tmp_path / "div"
    run_cli(["-m", "model=noisy_quadratic", "optimizer=sgd", "optimizer.lr=0.5,10", "seed=1,2", "trainer.steps=400",
             "trainer.progress=false", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    statuses = {p.name: read_status(p)["status"] for p in sweep.iterdir() if p.is_dir()}
    assert sorted(statuses.values()) == ["completed", "completed", "diverged", "diverged"]
    out = tmp_path / "report"
    run_cli([str(sweep), "--out", str(out)], cwd=tmp_path, script="hoopt-report")
    rows = {r["group"]: r for r in csv.DictReader(open(out / "summary.csv"))}
    assert rows["optimizer.lr=10"]["diverged"] == "2" and rows["optimizer.lr=0.5"]["diverged"] == "0"
    assert (out / "eval_gap_vs_epoch.png").exists()
