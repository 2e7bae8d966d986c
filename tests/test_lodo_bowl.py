"""LODO on the noisy quadratic bowl (LODO paper, Sec. 5.1): it learns H^{-1} and beats Adam at the paper's settings.

The bowl is ``build_model("noisy_quadratic")`` (n = 100, H = U diag(geometric 1e-3..1) U^T); the centre c
takes an N(0, I) step before every evaluation and x_0 = 0. Newton's expected loss is 1/2 tr H = 7.41.
Paper settings (LODO paper, Appendix E, Table 6): LODO alpha_0 0.270, beta 0.195, meta-lr 9.6e-4; Adam lr 1.164, betas (0.465, 0.9884).

Measured with seed 0 (float32): after 4k steps LODO's loss over the last quarter is ~11-12 (Adam ~15) and
the Hessian error falls from 0.96 to ~0.80; after 100k steps (the slow test) LODO is at ~9 and the error ~0.7.
"""

import statistics

import pytest
import torch

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
def test_lodo_on_the_paper_run_of_100k_steps():
    steps = 100_000
    lodo_losses, errors = track_bowl(lodo, steps, error_every=10_000)
    adam_losses, _ = track_bowl(adam, steps)
    lodo_late, adam_late = late(lodo_losses, 0.1), late(adam_losses, 0.1)
    assert lodo_late < 0.7 * adam_late
    assert lodo_late < 1.3 * NEWTON
    assert errors[-1] < 0.8 * errors[0]
