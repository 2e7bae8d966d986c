"""The NewtonSummary papers' presets and tuned values (docs/methods/newton_summary.md, "The papers' experiments"):
BigMLP's lambda_int, the ns_* presets running NewtonSummary and K-FAC as the papers did, the diagonal ablation's
grid on LeNet and VGG-11', and the K-FAC learning-rate grid."""

import pytest
from omegaconf import OmegaConf

from hoopt.runner.training.presets import compose_config, tuned_optimizer_options


def optimizer_of(*overrides):
    return OmegaConf.to_container(compose_config(list(overrides)).optimizer, resolve=True)


def sweep_params(name):
    return compose_config([f"experiment={name}"], hydra=True).hydra.sweeper.params


def test_bigmlp_uses_the_released_scripts_lambda_int():
    assert tuned_optimizer_options("bigmlp", "newton_summary")["lambda_int"] == 3.0
    assert tuned_optimizer_options("bigmlp", "newton_summary_diag")["lambda_int"] == 3.0
    assert tuned_optimizer_options("vbigmlp", "newton_summary")["lambda_int"] == 3.0  # BigMLP's values
    assert tuned_optimizer_options("lenet", "newton_summary")["lambda_int"] == 1.0


@pytest.mark.parametrize("preset", ["ns_mlp", "ns_lenet", "ns_vgg", "ns_bigmlp"])
def test_comparison_presets_run_the_methods_as_the_papers_did(preset):
    assert optimizer_of(f"experiment={preset}", "optimizer=newton_summary")["compat"] == "released"
    assert optimizer_of(f"experiment={preset}", "optimizer=kfac")["flavour"] == "papers"
    # and the clean methods are one override away
    clean = optimizer_of(f"experiment={preset}", "optimizer=kfac", "fidelity.kfac=clean")
    assert clean["flavour"] == "clean"
    assert optimizer_of(f"experiment={preset}", "fidelity.newton_summary=none")["compat"] == "none"


def test_without_a_preset_the_clean_methods_run():
    assert optimizer_of("optimizer=newton_summary")["compat"] == "none"
    assert optimizer_of("optimizer=kfac")["flavour"] == "clean"
    assert optimizer_of("optimizer=newton_summary", "optimizer.compat=released")["compat"] == "released"


def test_other_newton_summary_presets_are_released_too():
    for preset in ("ns_partitions", "ns_vbigmlp", "ns_diagonal"):
        assert optimizer_of(f"experiment={preset}")["compat"] == "released", preset


def test_diagonal_preset_is_the_papers_setting():
    """Appendix 0.K: the diagonal ablation on LeNet and VGG-11' with a grid over lambda_1 and lambda_int."""
    params = sweep_params("ns_diagonal")
    assert params["model"] == "lenet,vgg"
    assert len(str(params["optimizer.damping"]).split(",")) > 1
    assert len(str(params["optimizer.lambda_int"]).split(",")) > 1
    assert "optimizer" not in params  # only the ablation, not the full method's runs
    assert optimizer_of("experiment=ns_diagonal")["diagonal"] is True


def test_kfac_grid_preset_searches_the_learning_rate_in_the_papers_flavour():
    params = sweep_params("ns_kfac_grid")
    grid = [float(v) for v in str(params["optimizer.lr"]).split(",")]
    assert len(grid) >= 5 and 0.01 in grid and min(grid) < 0.001 < 0.03 < max(grid)
    assert optimizer_of("experiment=ns_kfac_grid")["flavour"] == "papers"
