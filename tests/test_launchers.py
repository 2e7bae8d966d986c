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
