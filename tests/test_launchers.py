"""The Hydra launcher plugins we pin install with our Hydra and drive hoopt-train."""

from conftest import read_status, run_cli


def test_joblib_launcher_runs_jobs_in_parallel_processes(tmp_path):
    sweep = tmp_path / "jl"
    run_cli(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=1,2", "dataset=digits",
             "trainer.epochs=1", "trainer.progress=false", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    jobs = [p for p in sweep.iterdir() if p.is_dir()]
    assert len(jobs) == 2 and all(read_status(j)["status"] == "completed" for j in jobs)


def test_submitit_slurm_launcher_config_composes(tmp_path):
    proc = run_cli(["hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=1",
                    "hydra.launcher.timeout_min=600", "--cfg", "hydra", "--package", "hydra.launcher"], cwd=tmp_path)
    assert "partition: gpu" in proc.stdout and "gpus_per_node: 1" in proc.stdout and "timeout_min: 600" in proc.stdout
    assert "SlurmLauncher" in proc.stdout


def test_override_dirname_leaves_out_exactly_the_execution_details():
    """One list of execution details (runner/training/identity.py) serves both the report's grouping and Hydra's
    job folder names: train.yaml's exclude_keys must be that list, nodes expanded into their keys."""
    import os

    import yaml
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from hoopt.runner.training.identity import is_execution_detail, override_exclude_keys

    with open(os.path.join(os.path.dirname(__file__), "..", "configs", "train.yaml")) as f:
        excluded = yaml.safe_load(f)["hydra"]["job"]["config"]["override_dirname"]["exclude_keys"]
    assert sorted(excluded) == sorted(override_exclude_keys())
    assert all(is_execution_detail(key) for key in excluded)
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="hoopt.configs", version_base="1.3"):
        cfg = compose("train", overrides=["optimizer=sgd", "seed=1", "trainer.device=cpu", "trainer.num_threads=2",
                                          "logger.log_every=5", "dataset.root=/data", "trainer.epochs=3"],
                      return_hydra_config=True)
    assert cfg.hydra.job.override_dirname == "optimizer=sgd,seed=1,trainer.epochs=3"
