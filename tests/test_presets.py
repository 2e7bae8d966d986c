"""Every experiment preset composes, with the paper's settings and the sweep it documents."""

import os

import pytest
from hydra import compose, initialize_config_dir

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
PRESETS = sorted(f[:-5] for f in os.listdir(os.path.join(CONFIGS, "experiment")) if f.endswith(".yaml"))
PAPER_SEEDS = "571677914,421146319,505702709,70478166,358472055"  # SPEC 1.5


def preset(name, *overrides):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose(config_name="train", overrides=[f"experiment={name}", *overrides], return_hydra_config=True)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_composes_and_sweeps(name):
    cfg = preset(name)
    params = cfg.hydra.sweeper.params
    assert "seed" in params
    swept_optimizers = str(params.get("optimizer", cfg.optimizer.name)).split(",")
    for optimizer in swept_optimizers:  # each job of the sweep composes too
        job = preset(name, f"optimizer={optimizer}")
        assert job.optimizer.name == optimizer


@pytest.mark.parametrize("name,model,epochs", [("ns_mlp", "mlp", 200), ("ns_lenet", "lenet", 200),
                                               ("ns_vgg", "vgg", 100), ("ns_bigmlp", "bigmlp", 100)])
def test_newton_summary_comparisons_use_paper_settings(name, model, epochs):
    cfg = preset(name)
    assert cfg.model.name == model and cfg.trainer.epochs == epochs and cfg.trainer.batch_size == 100
    assert cfg.hydra.sweeper.params.seed == PAPER_SEEDS
    assert set(cfg.hydra.sweeper.params.optimizer.split(",")) == {"adam", "kfac", "newton_summary"}


def test_lodo_presets_use_the_tasks_tuned_values():
    cfg = preset("lodo_quadratic")
    assert cfg.trainer.steps == 100000 and cfg.optimizer.meta_lr == 9.6e-4 and cfg.optimizer.lr == 0.270
    cfg = preset("lodo_image", "optimizer=yogi")
    assert cfg.trainer.steps == 300000 and cfg.trainer.batch_size == 256 and cfg.optimizer.lr == 9.34e-4
    cfg = preset("lodo_resnet", "optimizer=lodo")
    assert cfg.dataset.augment and cfg.model.l2 == 1e-4 and cfg.optimizer.beta == 0.9490
