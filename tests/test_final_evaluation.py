"""Measures too costly for every epoch run once, when a run completes: the pixel task's test loss over all 784
query positions of every test image (the LODO paper's measure), logged as test/loss_all_positions."""

import pytest
import torch

from conftest import read_metrics, train
from hoopt.runner.data.mnist_pixels import mean_loss_over_every_position


def test_the_pixel_task_logs_its_every_position_test_loss_once_at_the_end(tmp_path, tiny_data):
    run_dir = tmp_path / "pixels"
    train(["model=pixelcnn", "optimizer=adam", f"dataset.root={tiny_data}", "trainer.steps=4", "trainer.batch_size=8",
           "trainer.eval_batch_size=64", "trainer.final_eval_examples=3"], run_dir)
    final = [m for m in read_metrics(run_dir) if "test/loss_all_positions" in m]
    assert len(final) == 1 and final[0]["step"] == 4
    model_state = torch.load(run_dir / "checkpoint.pt", weights_only=False)["model"]
    from hoopt.models import build_model
    from hoopt.runner.data import load_dataset

    model = build_model("pixelcnn")
    model.load_state_dict(model_state)
    model.eval()
    dataset = load_dataset("mnist_pixels", tiny_data, download=False)
    expected = mean_loss_over_every_position(model, dataset.test.inputs[:3])
    assert final[0]["test/loss_all_positions"] == pytest.approx(expected, rel=1e-5)


def test_other_tasks_log_no_final_measure(tmp_path):
    run_dir = tmp_path / "digits"
    train(["dataset=digits", "trainer.epochs=1"], run_dir)
    assert not any(k.startswith("test/loss_all") for m in read_metrics(run_dir) for k in m)
