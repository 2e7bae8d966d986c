"""The Hbar probe observes K-FAC without changing it: its forwards run inside the optimizer's no_capture(), so a
run with probe.enabled=true ends with exactly the parameters of one without (hoopt's K-FAC draws no labels for the
probe; kfac-pytorch's hooks, which check only train mode, do not see the probe's forwards)."""

import os

import pytest
import torch

from conftest import train

try:
    import kfac.preconditioner  # noqa: F401

    HAS_KFAC_PYTORCH = True
except ImportError:
    HAS_KFAC_PYTORCH = False


def final_parameters(run_dir):
    state = torch.load(os.path.join(run_dir, "checkpoint.pt"), weights_only=False)
    return state["model"]


@pytest.mark.parametrize("optimizer", [
    "kfac",
    pytest.param("kfac_pytorch", marks=pytest.mark.skipif(not HAS_KFAC_PYTORCH, reason="kfac-pytorch is not installed "
                                                                                   "(it installs from its repository)")),
])
def test_the_probe_leaves_k_fac_unchanged(tmp_path, optimizer):
    common = ["dataset=digits", "model=mlp", "+model.kwargs.hidden=[32,16]", f"optimizer={optimizer}",
              "trainer.epochs=2", "trainer.batch_size=50", "probe.max_examples=200", "logger.hparams=false"]
    common += ["optimizer.cov_update_every=3"] if optimizer == "kfac" else ["optimizer.factor_update_steps=3"]
    train([*common, "probe.enabled=false"], tmp_path / "plain")
    train([*common, "probe.enabled=true"], tmp_path / "probed")
    plain, probed = final_parameters(tmp_path / "plain"), final_parameters(tmp_path / "probed")
    for name in plain:
        assert torch.equal(plain[name], probed[name]), name
