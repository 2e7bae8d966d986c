"""What a run tells its user and keeps: progress lines without a terminal (stdout and train.log), a closing line
with the final test metrics, Hbar images and the raw summaries of a default NewtonSummary run, and the divergence
rule for losses that blow up without becoming NaN."""

import numpy as np
import pytest

from conftest import read_status, tensorboard_tags, train


def test_without_a_terminal_progress_lines_go_to_stdout_and_train_log(tmp_path, capsys):
    run_dir = tmp_path / "run"
    train(["dataset=digits", "trainer.epochs=2", "trainer.progress=true", "logger.progress_every_s=0"], run_dir)
    out = capsys.readouterr().out
    progress = [line for line in out.splitlines() if line.startswith("hoopt: step ")]
    assert progress, out  # pytest's captured stdout is not a terminal: lines, not a bar
    assert all("/24 (" in line and "steps/s" in line and "ETA" in line and "epoch " in line for line in progress)
    closing = out.strip().splitlines()[-1]
    assert closing.startswith("hoopt: run finished after 24 steps") and "test accuracy" in closing
    log = (run_dir / "train.log").read_text()
    assert progress[0] in log and closing in log  # the run's log holds what it said


def test_a_default_newton_summary_run_keeps_hbar_images_and_raw_summaries(tmp_path):
    run_dir = tmp_path / "ns"
    train(["dataset=digits", "optimizer=newton_summary", "trainer.epochs=3", "+model.kwargs.hidden=[32,16]"], run_dir)
    images = tensorboard_tags(str(run_dir)).Tags()["images"]
    assert {"summary/hbar", "summary/hbar_inv", "summary/gbar", "summary/d3"} <= set(images)
    records = np.load(run_dir / "records.npz")
    hbar, steps = records["summary/hbar"], records["summary/hbar@step"]
    refreshes = (3 * 12 + 9) // 10  # one every T = 10 steps, from the first step on
    assert hbar.shape == (refreshes, 6, 6) and list(steps) == [1 + 10 * k for k in range(refreshes)]
    assert np.allclose(hbar, hbar.transpose(0, 2, 1))  # Hbar is a Hessian: symmetric
    assert records["summary/raw_hbar"].shape == hbar.shape and records["summary/lr"].shape == (refreshes, 6)
    assert np.isnan(records["summary/lr"][0]).all() and np.isfinite(records["summary/lr"][-1]).all()


@pytest.mark.parametrize("factor,status", [(None, "diverged"), ("null", "completed")])
def test_a_loss_that_blows_up_without_overflowing_is_a_divergence(tmp_path, factor, status):
    # SGD at 2.5 on the bowl (largest curvature 1) multiplies the top eigendirection by -1.5 per step: after 60
    # steps the loss is ~1e21, finite, and a run that reported it as a result would poison every mean.
    overrides = ["model=noisy_quadratic", "optimizer=sgd", "optimizer.lr=2.5", "optimizer.momentum=0",
                 "trainer.steps=60", "logger.log_every=5"]
    if factor is not None:
        overrides.append(f"trainer.divergence_factor={factor}")
    run_dir = tmp_path / "bowl"
    train(overrides, run_dir)
    record = read_status(run_dir)
    assert record["status"] == status, record
    if status == "diverged":
        assert "divergence_factor" in record["message"] and record["step"] < 60
