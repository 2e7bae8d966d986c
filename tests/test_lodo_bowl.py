"""LODO on the noisy quadratic bowl (LODO paper, Sec. 5.1): it learns H^{-1} and beats Adam at the paper's settings.

The bowl is ``build_model("noisy_quadratic")`` (n = 100, H = U diag(geometric 1e-3..1) U^T); the centre c
takes an N(0, I) step before every evaluation and x_0 = 0. Newton's expected loss is 1/2 tr H = 7.41.
Paper settings (LODO paper, Appendix E, Table 6): LODO alpha_0 0.270, beta 0.195, meta-lr 9.6e-4; Adam lr 1.164, betas (0.465, 0.9884).

Measured with seed 0 (float32): after 4k steps LODO's loss over the last quarter is ~11-12 (Adam ~15) and
the Hessian error falls from 0.96 to ~0.80. After 100k steps (the slow test, 3 seeds through the runner) the mean
loss over the last 10% of steps is ~8.9, as in the authors' TensorFlow code.
"""

import statistics

import pytest
import torch
from conftest import read_metrics, train

from hoopt.models import build_model
from hoopt.optimizers.lodo import LODO

NEWTON = 7.41


@pytest.fixture(autouse=True)
def one_thread():
    """The bowl's tensors are tiny (n = 100): threads only add barriers, which on a shared machine dominate."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def track_bowl(make_optimizer, steps, error_every=0, seed=0):
    """Losses per step (and Hessian errors at the interval) of an optimizer tracking the moving bowl."""
    bowl = build_model("noisy_quadratic")
    assert bowl.optimum_loss == pytest.approx(NEWTON, abs=0.005)
    optimizer = make_optimizer(bowl.parameters())
    if error_every:
        optimizer.set_hessian(bowl.hessian)
    generator = torch.Generator().manual_seed(seed)
    centre = torch.zeros(100)
    losses, errors = [], []
    for step in range(steps):
        if error_every and step % error_every == 0:
            errors.append(optimizer.hessian_error())
        centre += torch.randn(100, generator=generator)

        def closure():
            optimizer.zero_grad()
            loss = bowl(centre)
            loss.backward()
            return loss

        losses.append(float(optimizer.step(closure).detach()))
    if error_every:
        errors.append(optimizer.hessian_error())
    return losses, errors


def lodo(params):
    return LODO(params, lr=0.270, meta_lr=9.6e-4, beta=0.195, seed=0)


def adam(params):
    return torch.optim.Adam(params, lr=1.164, betas=(0.465, 0.9884))


def late(losses, fraction):
    return statistics.mean(losses[-int(len(losses) * fraction):])


def test_lodo_beats_adam_and_learns_the_inverse_hessian_short_run():
    steps = 4000
    lodo_losses, errors = track_bowl(lodo, steps, error_every=1000)
    adam_losses, _ = track_bowl(adam, steps)
    lodo_late, adam_late = late(lodo_losses, 0.25), late(adam_losses, 0.25)
    assert lodo_late < 0.85 * adam_late  # well below Adam
    assert lodo_late < 1.75 * NEWTON  # within 1.75x of Newton's optimum after only 4k of the paper's 100k steps
    assert errors[0] == pytest.approx(0.96, abs=0.02)  # G_0 = 0.27 I
    assert errors[-1] < 0.88 * errors[0]  # the Hessian-approximation error decreases


@pytest.mark.slow
def test_lodo_reproduces_the_papers_bowl_over_seeds(tmp_path):
    """The paper's run through the runner (model=noisy_quadratic optimizer=lodo: the tuned values, 100k steps), 3
    seeds (each draws its own permutations, initial blocks and random walk). The mean training loss over the last
    10% of steps, averaged over seeds, is within 10% of 8.89: the authors' TensorFlow code gives 8.888 +- 0.034
    and hoopt 8.885 +- 0.034 over 4 seeds (Newton's optimum is 7.41)."""
    late_losses = []
    for seed in range(3):
        run_dir = tmp_path / f"seed{seed}"
        train(["model=noisy_quadratic", "optimizer=lodo", f"seed={seed}", "logger.log_every=100",
               "trainer.num_threads=1"], run_dir)
        metrics = read_metrics(run_dir)
        losses = [e["train/loss"] for e in metrics if "train/loss" in e]  # each the mean over 100 steps
        assert len(losses) == 1000
        late_losses.append(statistics.mean(losses[-100:]))  # steps 90,001-100,000
        errors = [e["lodo/hessian_error"] for e in metrics if "lodo/hessian_error" in e]  # every 1000 steps
        assert errors[-1] < min(errors[0], 0.8)  # LODO learns the inverse Hessian (G_0 = 0.27 I: 0.96)
    print("late losses per seed:", late_losses)
    assert statistics.mean(late_losses) == pytest.approx(8.89, rel=0.1)
    assert all(late == pytest.approx(8.89, rel=0.1) for late in late_losses)  # measured: 8.89, 8.84, 8.89
