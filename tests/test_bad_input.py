"""Every bad value gets one sentence that names the key, the value and what is expected, before anything is
written; nothing that would train wrongly is silently accepted; a mistyped key is answered with the key meant;
damaged MNIST files are named; ``--help`` starts with hoopt's own usage, and start-up imports only what is used."""

import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from conftest import compose, run_cli
from fake_data import write_idx, write_mnist


def refusal(*overrides):
    from hoopt.runner.errors import HooptError
    from hoopt.runner.training.settings import check_config

    with pytest.raises(HooptError) as error:
        check_config(compose(*overrides))
    message = str(error.value)
    assert "\n" not in message and message.endswith((".", "?")), message
    return message


@pytest.mark.parametrize("overrides,expected", [
    (["trainer.batch_size=abc"], "trainer.batch_size='abc' is not a whole number"),
    (["trainer.epochs=abc"], "trainer.epochs='abc' is not a whole number"),
    (["seed=abc"], "seed='abc' is not a whole number"),
    ([f"seed={2**70}"], f"seed={2**70} is out of range; give a whole number from 0 to {2**63 - 1}"),
    (["seed=-1"], "seed=-1 is out of range"),
    (["seed=1.5"], "seed=1.5 is not a whole number"),
    (["trainer.num_threads=0"], "trainer.num_threads=0 is out of range; give a whole number >= 1"),
    (["trainer.num_threads=abc"], "trainer.num_threads='abc' is not understood; give auto or a whole number"),
    (["trainer.eval_batch_size=0"], "trainer.eval_batch_size=0 is out of range"),
    (["trainer.eval_batch_size=-1"], "trainer.eval_batch_size=-1 is out of range"),
    (["trainer.steps=-5"], "trainer.steps=-5 is out of range; give a whole number >= 1 (or null)"),
    (["trainer.batch_size=2.5"], "trainer.batch_size=2.5 is not a whole number"),
    (["trainer.epochs=2.5"], "trainer.epochs=2.5 is not a whole number"),
    (["trainer.epochs=0"], "trainer.epochs=0 is out of range"),
    (["trainer.progress=maybe"], "trainer.progress='maybe' is not a boolean"),
    (["trainer.device=gpu"], "trainer.device='gpu' is not a device"),
    (["logger.log_every=0"], "logger.log_every=0 is out of range"),
    (["logger.log_every=-3"], "logger.log_every=-3 is out of range"),
    (["logger.image_every=-1"], "logger.image_every=-1 is out of range"),
    (["model.l2=-1"], "model.l2=-1"),
    (["optimizer=kfac", "optimizer.cov_update_every=inf"], "optimizer.cov_update_every=inf is not a finite number"),
    (["optimizer=adam", "optimizer.lr=1e38"], "optimizer.lr=1e+38 is too large"),
    (["optimizer=yogi", "optimizer.lr=1e38"], "optimizer.lr=1e+38 is too large"),
    (["optimizer=adam", "optimizer.lr=nan"], "optimizer.lr=nan is not a finite number"),
    (["optimizer=adam", "optimizer.lr=0"], "optimizer.lr=0 is not a positive number"),
    (["optimizer=adam", "optimizer.lr=abc"], "optimizer.lr='abc' is not a positive number"),
    (["optimizer=adam", "optimizer.betas=[0.9,inf]"], "optimizer.betas[1]=inf is not a finite number"),
    (["optimizer=sgd", "optimizer.momentum=nan"], "optimizer.momentum=nan is not a finite number"),
    (["optimizer=rmsprop", "optimizer.alpha=inf"], "optimizer.alpha=inf is not a finite number"),
    (["optimizer=lars", "optimizer.trust_coefficient=nan"], "optimizer.trust_coefficient=nan is not a finite number"),
])
def test_bad_values_are_one_sentence_naming_key_value_and_expectation(overrides, expected):
    assert expected in refusal(*overrides)


@pytest.mark.parametrize("overrides", [
    ["trainer.steps=1e5", "model=noisy_quadratic"],  # Hydra reads 1e5 as a float: a whole number all the same
    ["seed=0"], ["trainer.num_threads=2"], ["trainer.device=cuda:1"], ["logger.image_every=null"],
])
def test_good_values_pass(overrides):
    from hoopt.runner.training.settings import check_config

    check_config(compose(*overrides))


def test_bad_values_through_the_command_line_write_nothing(tmp_path):
    run_dir = tmp_path / "r"
    for args in (["trainer.batch_size=abc"], ["seed=2.5"], ["trainer.steps=-5"], ["optimizer.lr=1e38"]):
        proc = run_cli(["dataset=digits", *args, f"hydra.run.dir={run_dir}"], cwd=tmp_path, check=False)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("hoopt: error: "), proc.stderr
        assert args[0].split("=")[0] in lines[0]
    assert not run_dir.exists()  # refused before Hydra made the folder
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("argv,expected", [
    (["trainer.epoch=3"], "unknown key trainer.epoch; did you mean trainer.epochs?"),
    (["logger.log_evry=3"], "did you mean logger.log_every?"),
    (["optimizer=lodo", "optimizer.learning_rate=1"], "the keys of optimizer 'lodo' are: beta, block_size"),
    (["model.kwargs.hidden=[8]"], "add it with a plus: +model.kwargs.hidden=[8]"),
    (["trainer.epochs.x=1"], "trainer.epochs is a single value"),
])
def test_a_mistyped_key_is_answered_with_the_key_meant(argv, expected):
    from hoopt.runner.cli.argv_checks import check_override_keys
    from hoopt.runner.errors import HooptError

    with pytest.raises(HooptError) as error:
        check_override_keys(argv)
    assert expected in str(error.value)
    if "+" not in expected:
        assert "+" not in str(error.value)  # never the advice to add a key that exists under another name


def test_a_mistyped_key_on_the_command_line_is_one_sentence_without_plus_advice(tmp_path):
    proc = run_cli(["dataset=digits", "trainer.epoch=3"], cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "hoopt: error: unknown key trainer.epoch; did you mean trainer.epochs?"
    assert not (tmp_path / "outputs").exists()


def test_valid_keys_pass_the_key_check():
    from hoopt.runner.cli.argv_checks import check_override_keys

    check_override_keys(["trainer.epochs=3", "optimizer.lr=1", "seed=2", "probe.enabled=true", "+trainer.foo=1",
                         "++optimizer.summary_batch_size=8", "hydra.run.dir=x", "model=mlp", "dataset.root=/d",
                         "optimizer.nesterov=true", "trainer.interrupt_after_epoch=1",
                         "+model.kwargs.width=8", "model.kwargs.width=16"])


# -- MNIST files -------------------------------------------------------------------------------------------------

def mnist_error(root):
    from hoopt.runner.data import load_dataset
    from hoopt.runner.errors import HooptError

    with pytest.raises(HooptError) as error:
        load_dataset("mnist", str(root), download=False)
    return str(error.value)


def test_mnist_with_a_wrong_image_magic_is_named(tmp_path):
    write_mnist(str(tmp_path))
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    data = bytearray(path.read_bytes())
    data[2:4] = b"\x08\x01"  # the magic of a label file
    path.write_bytes(bytes(data))
    message = mnist_error(tmp_path)
    assert str(path) in message and "is not an MNIST images file (magic number 0x00000801" in message


def test_mnist_with_mismatched_image_and_label_counts_is_named(tmp_path):
    write_mnist(str(tmp_path))
    labels = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    write_idx(str(labels), np.zeros(39, dtype=np.uint8))  # 40 test images
    assert "holds 40 images but" in mnist_error(tmp_path) and "39 labels" in mnist_error(tmp_path)


def test_mnist_with_a_label_out_of_range_is_named(tmp_path):
    write_mnist(str(tmp_path))
    labels = tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    values = np.zeros(120, dtype=np.uint8)
    values[7] = 12
    write_idx(str(labels), values)
    assert "holds the label 12, outside MNIST's 0-9" in mnist_error(tmp_path)


def test_a_truncated_mnist_file_is_named(tmp_path):
    write_mnist(str(tmp_path))
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    header = struct.pack(">BBBBIII", 0, 0, 8, 3, 120, 28, 28)
    assert path.read_bytes()[:16] == header
    assert "where its header promises" in mnist_error(tmp_path)


# -- start-up ----------------------------------------------------------------------------------------------------

def test_help_starts_with_hoopts_own_usage(tmp_path):
    proc = run_cli(["--help"], cwd=tmp_path)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("hoopt-train: train a model with an optimizer")
    head = "\n".join(lines[:40])
    for group in ("model", "dataset", "optimizer", "experiment"):
        assert f"\n  {group} " in head, head
    assert "newton_summary" in head and "resume=<run dir>" in head
    assert "powered by Hydra" in proc.stdout  # Hydra's own help follows


def imported_after(code):
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(sorted(m for m in ('torch', "
                          "'torchvision', 'sklearn') if m in sys.modules))"],
                         capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": ""})
    return out.stdout.strip().splitlines()[-1]


def test_the_command_line_imports_no_torch_before_it_needs_it():
    assert imported_after("import hoopt.runner.cli.train") == "[]"


def test_a_digits_run_imports_neither_torchvision_nor_more_than_it_uses():
    assert imported_after("from hoopt.runner.data import load_dataset") == "['torch']"
    assert imported_after("from hoopt.runner.data import load_dataset; load_dataset('digits')") == \
        "['sklearn', 'torch']"
    assert imported_after("import hoopt.runner.training.run, hoopt.runner.training.build") == "['torch']"
