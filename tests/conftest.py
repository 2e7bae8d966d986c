import json
import os
import shutil
import subprocess
import sys

# The suite runs in parallel processes (pytest-xdist, pyproject's addopts): one thread each, set before torch is
# imported here or in a hoopt-train subprocess (which inherits it), so workers do not fight over the cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from fake_data import write_cifar10, write_mnist  # noqa: E402

SUPPORT = os.path.join(os.path.dirname(__file__), "support")
BIN = os.path.dirname(sys.executable)


@pytest.fixture
def float64_default():
    """float64 as torch's default dtype for one test, for comparisons against brute force."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A data root with small MNIST and CIFAR-10 copies in torchvision's layout."""
    root = tmp_path_factory.mktemp("data")
    write_mnist(str(root))
    write_cifar10(str(root))
    return str(root)


def compose(*overrides):
    """The composed config of ``hoopt-train <overrides>``, from the package's configs, without running anything."""
    from hydra import compose as hydra_compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="hoopt.configs", version_base="1.3"):
        return hydra_compose(config_name="train", overrides=list(overrides))


def train(overrides, run_dir):
    """One run in this process, as ``hoopt-train <overrides> hydra.run.dir=<run_dir>`` would do it (what the console
    script adds, command-line checks and one-sentence errors, is tested through the script itself)."""
    from hoopt.runner.training.run import run

    return run(compose("trainer.progress=false", *overrides), run_dir=str(run_dir))


@pytest.fixture(autouse=True)
def _tiny_cifar_files_pass_the_checksum(monkeypatch):
    """The tiny CIFAR-10 files the tests write cannot match torchvision's fixed MD5 sums (subprocesses get the same
    switch from support/sitecustomize.py)."""
    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)


def run_cli(args, cwd, script="hoopt-train", check=True, timeout=900):
    """Runs a console script in a subprocess, the way a user does; returns the CompletedProcess."""
    env = {**os.environ, "PYTHONPATH": SUPPORT, "HOOPT_TEST_SKIP_CIFAR_MD5": "1", "HYDRA_FULL_ERROR": "0"}
    exe = shutil.which(script, path=BIN) or shutil.which(script)
    proc = subprocess.run([exe, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def read_status(run_dir):
    with open(os.path.join(run_dir, "status.json")) as f:
        return json.load(f)


def read_metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def tensorboard_tags(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(run_dir, size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc
