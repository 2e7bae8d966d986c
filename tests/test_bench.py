"""The benchmarks run end to end at reduced sizes and print their ratios (timings are never asserted)."""

import re

from conftest import run_cli


def test_bench_loop_prints_a_ratio(tmp_path):
    proc = run_cli(["loop", "--steps", "4", "--repeats", "1", "--batch-size", "8", "--device", "cpu"], cwd=tmp_path,
                   script="hoopt-bench")
    assert re.search(r"ratio hoopt/bare: \d+\.\d+", proc.stdout), proc.stdout


def test_bench_unknown_name_is_one_sentence(tmp_path):
    proc = run_cli(["nothing"], cwd=tmp_path, script="hoopt-bench", check=False)
    assert proc.returncode == 2 and "choose one of: loop, summary, epoch, lodo, kfac" in proc.stderr
