"""LODO's memory estimate and its refusal to start when the device lacks the memory (before allocating)."""

import io
import os

import pytest
import torch

import hoopt.optimizers.lodo.memory as memory
from hoopt.optimizers.lodo import (
    LODO,
    LodoMemoryError,
    available_memory_bytes,
    check_lodo_fits,
    lodo_bytes_per_parameter,
    lodo_memory_bytes,
    padded_size,
)


def test_memory_components_for_the_default_lodo():
    n, k, depth = 94696, 4, 16
    m = padded_size(n, k)
    parts = lodo_memory_bytes(n)
    theta = depth * k * m * 4  # float32 blocks, N*k*m ~ 128 n numbers
    assert parts["preconditioner"] == theta == parts["meta_gradient"]
    assert parts["meta_optimizer"] == 2 * theta  # Adam's two moments
    assert parts["permutations"] == 2 * depth * m * 4  # int32 permutations and inverses
    assert parts["vectors"] == 3 * n * 4
    per_parameter = lodo_bytes_per_parameter(n)
    assert per_parameter == pytest.approx(sum(parts.values()) / n)
    assert 2000 < per_parameter < 3500


def test_memory_shrinks_for_ablations_and_sgd():
    n = 10_000
    assert lodo_memory_bytes(n, meta_optimizer="sgd")["meta_optimizer"] == 0
    assert lodo_bytes_per_parameter(n, preconditioner="diagonal") < 40
    assert lodo_bytes_per_parameter(n, preconditioner="global") < 20
    assert lodo_bytes_per_parameter(n, dtype=torch.float64) > lodo_bytes_per_parameter(n)
    with pytest.raises(ValueError, match="preconditioner must be one of"):
        lodo_memory_bytes(n, preconditioner="dense")


def test_available_memory_on_the_cpu_is_memavailable_in_bytes(monkeypatch):
    meminfo = "MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:    7654321 kB\n"
    monkeypatch.setattr(memory, "open", lambda path: io.StringIO(meminfo), raising=False)
    assert available_memory_bytes("cpu") == 7654321 * 1024


def test_available_memory_without_meminfo_or_on_an_unknown_device_is_unknown(monkeypatch):
    assert available_memory_bytes("meta") is None

    def missing(path):
        raise FileNotFoundError(path)

    monkeypatch.setattr(memory, "open", missing, raising=False)
    assert available_memory_bytes("cpu") is None


@pytest.mark.skipif(not os.path.exists("/proc/meminfo"), reason="the CPU's free memory comes from /proc/meminfo")
def test_available_memory_on_this_machine_is_between_zero_and_the_total():
    with open("/proc/meminfo") as meminfo:
        total = next(int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemTotal:"))
    free = available_memory_bytes("cpu")
    assert isinstance(free, int) and 0 < free <= total


def test_too_large_a_model_fails_with_a_clear_message_before_allocating(monkeypatch):
    monkeypatch.setattr(memory, "available_memory_bytes", lambda device: 1_000_000)
    with pytest.raises(LodoMemoryError, match=r"LODO needs about .* GiB on cpu .* bytes per parameter .* free"):
        check_lodo_fits(10_000, "cpu")
    # 10,000 parameters whose LODO state needs ~26 MB against 1 MB "free": refused in the constructor
    params = [torch.nn.Parameter(torch.zeros(1_000)) for _ in range(10)]
    with pytest.raises(MemoryError, match="smaller depth or block_size"):
        LODO(params)
    assert check_lodo_fits(10, "cpu") > 0  # small enough still passes
    LODO(params, check_memory=False)  # the check can be switched off
