"""The benchmarks run end to end at their smallest sizes, in-process, with ``--device auto``, and print finite
positive figures (timings are never compared: they depend on the machine); the shared timing and device
helpers do what the benchmarks rely on."""

import argparse
import importlib
import math
import re
import types

import pytest
import torch

from conftest import run_cli
from hoopt.runner.benchmarks import timing
from hoopt.runner.benchmarks.device import add_device_argument, resolve_device
from hoopt.runner.cli.bench import BENCHMARKS

# The smallest sizes each benchmark accepts, and the model whose table row must come out.
SMALLEST = {
    "loop": (["--steps", "4", "--repeats", "1", "--batch-size", "8"], r"^hoopt loop"),
    "summary": (["--models", "mlp", "--batch", "4", "--repeats", "1"], r"^mlp "),
    "epoch": (["--models", "mlp", "--batch", "8", "--steps", "10", "--repeats", "1", "--examples", "64"], r"^mlp "),
    "lodo": (["--models", "lenet", "--batch", "8", "--repeats", "1", "--warmup", "1"], r"^lenet "),
    "kfac": (["--models", "mlp", "--batch", "8", "--repeats", "1", "--cov-every", "2", "--inv-every", "4"],
             r"^mlp "),
    "competitors": (["--models", "mlp", "--batch", "8", "--steps", "1", "--repeats", "1",
                     "--optimizers", "soap,kron,adahessian,sophia"], r"^mlp\s+sophia "),
    "tuning": (["--trials", "3", "--sampler-seeds", "1"], r"^\s+3\s"),
}
NUMBER = re.compile(r"(?<![\w.])-?(?:\d[\d,]*\.?\d*(?:e[-+]?\d+)?|nan|inf)", re.IGNORECASE)


def test_every_benchmark_has_a_smoke_size():
    assert set(SMALLEST) == set(BENCHMARKS)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_runs_with_device_auto(name, capsys):
    argv, row = SMALLEST[name]
    importlib.import_module(f"hoopt.runner.benchmarks.{name}").run(argv + ["--device", "auto"])
    out = capsys.readouterr().out
    resolved = "cuda" if torch.cuda.is_available() else "cpu"
    assert re.search(rf"\b{resolved}\b", out.splitlines()[0]), out  # the header names the resolved device
    lines = [line for line in out.splitlines() if re.match(row, line)]
    assert len(lines) == 1, out
    figures = [float(n.replace(",", "")) for n in NUMBER.findall(lines[0])]
    assert figures and all(math.isfinite(f) and f >= 0 for f in figures), lines[0]


def test_bench_unknown_name_is_one_sentence(tmp_path):
    proc = run_cli(["nothing"], cwd=tmp_path, script="hoopt-bench", check=False)
    assert proc.returncode == 2 and "choose one of: loop, summary, epoch, lodo, kfac" in proc.stderr


def test_device_auto_resolves_to_cuda_only_when_available():
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("name", ["tpu", "gpu", "auto:0"])
def test_device_option_refuses_what_is_not_a_device(name, capsys):
    parser = argparse.ArgumentParser(prog="hoopt-bench x")
    add_device_argument(parser)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--device", name])
    assert exit_info.value.code == 2 and "use cpu, cuda or auto" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_option_refuses_cuda_without_a_cuda_device(capsys):
    parser = argparse.ArgumentParser(prog="hoopt-bench x")
    add_device_argument(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--device", "cuda"])
    assert "no CUDA device is available" in capsys.readouterr().err


def test_interleaved_medians_alternates_warms_up_and_takes_medians(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    calls = []
    durations = {"a": iter([9.0, 1.0, 5.0, 3.0]), "b": iter([9.0, 2.0, 2.0, 8.0])}  # first: the warm-up

    def make(name):
        def fn():
            calls.append(name)
            clock[0] += next(durations[name])
        return fn

    medians = timing.interleaved_medians({"a": make("a"), "b": make("b")}, torch.device("cpu"), repeats=3)
    assert calls == ["a", "b"] * 4
    assert medians == {"a": 3.0, "b": 2.0}


def test_interleaved_medians_refuses_no_repeats():
    with pytest.raises(ValueError, match="repeats"):
        timing.interleaved_medians({"a": lambda: None}, torch.device("cpu"), repeats=0)


@pytest.mark.parametrize("argv, message", [
    (["--experiment", "ns_mlp_tune"], "ns_mlp_tune trains model 'mlp', not a synthetic objective"),
    (["tune.reduce=final"], "ranks runs by final train/loss"),
    (["--optimizer", "newton_summary"], "lodo_rosenbrock_tune has no search space for optimizer=newton_summary; "
                                        "choose one of: adam, lars, lodo"),
    (["--trials", "32,x"], "--trials=32,x is not a comma-separated list of whole numbers"),
])
def test_the_tuning_benchmark_refuses_what_it_cannot_score_in_one_sentence(argv, message, capsys):
    from hoopt.runner.benchmarks import tuning

    with pytest.raises(SystemExit) as stop:
        tuning.run([*argv, "--sampler-seeds", "1"])
    assert stop.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # argparse prints its usage lines before the sentence
    assert last.startswith("hoopt-bench tuning: ") and message in last
