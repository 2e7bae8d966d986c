"""A run dir belongs to one run: a refused command changes nothing on disk, a resume is the same run or is
refused, checkpoints are verified, one process owns a dir at a time, a fresh start in a dir an earlier attempt
left behind begins clean logs, and Ctrl-C ends in one line that says how to resume."""

import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import BIN, SUPPORT, read_metrics, read_status, run_cli, train

SMALL = ["dataset=digits", "+model.kwargs.hidden=[16]", "seed=3", "trainer.progress=false"]

# Runs hoopt-train's main() once per command line in ONE process (start-up paid once), with Hydra's global state
# cleared between commands, and prints every command's exit code, stdout and stderr as JSON.
DRIVER = r"""
import contextlib, io, json, sys
from hydra.core.global_hydra import GlobalHydra
from hoopt.runner.cli.train import main
results = []
for argv in json.loads(sys.stdin.read()):
    GlobalHydra.instance().clear()
    sys.argv = ["hoopt-train", *argv]
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main()
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
    results.append({"argv": argv, "code": code, "stdout": out.getvalue(), "stderr": err.getvalue()})
print(json.dumps(results))
"""


def run_commands(commands, cwd):
    env = {**os.environ, "PYTHONPATH": SUPPORT, "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.run([sys.executable, "-c", DRIVER], input=json.dumps(commands), cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def tree(root):
    """Every file and folder under root: bytes (as a hash), size and modification time."""
    found = {}
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        found[os.path.relpath(folder, root)] = ("dir", os.stat(folder).st_mtime_ns)
        for name in sorted(files):
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            found[os.path.relpath(path, root)] = (digest, os.path.getsize(path), os.stat(path).st_mtime_ns)
    return found


def one_sentence(result):
    lines = [line for line in result["stderr"].splitlines() if line.strip()]
    assert result["code"] == 2, result
    assert len(lines) == 1 and lines[0].startswith("hoopt: error: "), result
    assert "Traceback" not in result["stderr"] + result["stdout"], result
    return lines[0]


def flip_a_byte_in_the_tensor_data(path):
    data = bytearray(path.read_bytes())
    position = data.find(b"data/0") + 200  # inside the first stored tensor, past the zip headers
    data[position] ^= 0x01
    path.write_bytes(bytes(data))


def fake_hydra_record(run_dir):
    (run_dir / ".hydra").mkdir(exist_ok=True)
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        (run_dir / ".hydra" / name).write_text(f"# the original record of {run_dir.name}\n")


def test_refusals_change_nothing_on_disk(tmp_path):
    """Every refusal, for Adam and for the methods with their own state (NewtonSummary, K-FAC, LODO): the whole
    tree is byte for byte and timestamp for timestamp what it was, and no folder appears."""
    from hoopt.runner.training.run_dir import RunDirLock

    commands, expected, holders = [], [], []
    (tmp_path / "a_file").write_text("not a folder\n")
    for name in ("adam", "newton_summary", "kfac", "lodo"):
        base = tmp_path / name
        common = [*SMALL, f"optimizer={name}"]
        train([*common, "trainer.epochs=1"], base / "done")
        train([*common, "trainer.epochs=3", "++trainer.interrupt_after_epoch=1"], base / "killed")
        train([*common, "trainer.epochs=1", "trainer.checkpoint=false"], base / "no_checkpoint")
        for copy in ("live", "corrupt", "bad_status", "bad_metrics"):
            shutil.copytree(base / "killed", base / copy)
        flip_a_byte_in_the_tensor_data(base / "corrupt" / "checkpoint.pt")
        (base / "bad_status" / "status.json").write_text('{"status": "runn')
        with open(base / "bad_metrics" / "metrics.jsonl", "a") as f:
            f.write('{"step": 5, "train/lo\n')
        for run_dir in base.iterdir():
            fake_hydra_record(run_dir)
        holders.append(RunDirLock.take(str(base / "live")))  # a live owner: this test process holds the lock
        cases = [
            (["trainer.epochs=1", f"hydra.run.dir={base / 'done'}"], "already holds a run (status completed"),
            (["trainer.epochs=1", f"resume={base / 'done'}"], "already completed"),
            (["trainer.epochs=3", f"resume={base / 'killed'}", "seed=4"], "seed: 3 in the checkpoint, 4 now"),
            (["trainer.epochs=3", f"resume={base / 'killed'}", "trainer.batch_size=50"], "trainer.batch_size"),
            (["trainer.epochs=2", f"resume={base / 'killed'}"], "trainer.epochs: 3 in the checkpoint, 2 now"),
            (["trainer.epochs=3", f"resume={base / 'killed'}", "++model.kwargs.hidden=[32]"], "model.kwargs.hidden"),
            (["trainer.epochs=3", f"resume={base / 'killed'}", "optimizer=sgd"], "optimizer.name: "),
            (["trainer.epochs=3", f"resume={base / 'live'}"], "is in use by another hoopt-train"),
            (["trainer.epochs=3", f"hydra.run.dir={base / 'live'}"], "is in use by another hoopt-train"),
            (["trainer.epochs=3", f"resume={base / 'corrupt'}"], "is corrupted (its SHA-256 does not match"),
            (["trainer.epochs=3", f"resume={base / 'bad_status'}"], "status.json is damaged"),
            (["trainer.epochs=3", f"resume={base / 'bad_metrics'}"], "metrics.jsonl is damaged at line"),
            (["trainer.epochs=1", f"hydra.run.dir={base / 'no_checkpoint'}"], "already holds a completed run"),
            (["resume=true", f"hydra.run.dir={base / 'nothing_here'}"], "there is no run to resume"),
            (["trainer.batch_size=abc", f"hydra.run.dir={base / 'new'}"], "trainer.batch_size='abc' is not a whole"),
            (["trainer.epochs=1", f"hydra.run.dir={tmp_path / 'a_file' / 'run'}"], "a_file is a file"),
        ]
        commands += [[*common, *args] for args, _ in cases]
        expected += [text for _, text in cases]
    before = tree(tmp_path)
    results = run_commands(commands, cwd=tmp_path)
    after = tree(tmp_path)
    for holder in holders:
        holder.release()
    for result, text in zip(results, expected):
        assert text in one_sentence(result), (result["argv"], result["stderr"])
    assert after == before, {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                             if before.get(k) != after.get(k)}
    # the refusals did not make the runs unusable: the killed one continues once asked with its own settings
    train([*SMALL, "optimizer=adam", "trainer.epochs=3", "resume=true"], tmp_path / "adam" / "killed")
    assert read_status(tmp_path / "adam" / "killed")["status"] == "completed"


def final_parameters(run_dir):
    return torch.load(os.path.join(run_dir, "checkpoint.pt"), weights_only=False)["model"]


def assert_same_parameters(a, b):
    pa, pb = final_parameters(a), final_parameters(b)
    assert pa.keys() == pb.keys()
    for key in pa:
        assert torch.equal(pa[key], pb[key]), key


# every method family: only an optimizer that takes the run's length (LARS, below) is refused a longer budget
@pytest.mark.parametrize("optimizer", ["adam", "newton_summary", "kfac", "lodo"])
def test_a_raised_epoch_budget_continues_to_exactly_the_longer_run(tmp_path, optimizer):
    common = [*SMALL, f"optimizer={optimizer}"]
    train([*common, "trainer.epochs=4"], tmp_path / "full")
    train([*common, "trainer.epochs=2"], tmp_path / "part")
    assert read_status(tmp_path / "part")["status"] == "completed"
    train([*common, "trainer.epochs=4", "resume=true"], tmp_path / "part")  # a completed run, continued
    assert read_status(tmp_path / "part")["status"] == "completed"
    assert_same_parameters(tmp_path / "full", tmp_path / "part")
    epochs = [m["epoch"] for m in read_metrics(tmp_path / "part") if "train/epoch_loss" in m]
    assert epochs == [1, 2, 3, 4]


def test_a_run_whose_optimizer_schedules_over_the_runs_length_cannot_be_lengthened_and_nothing_changes(tmp_path):
    """LARS decays over the run's length (the total_steps run dependency): continuing to a longer budget would not
    end as a run trained with that budget from the start, so it is refused; a horizon fixed in the config may."""
    from hoopt.runner.errors import HooptError

    common = [*SMALL, "optimizer=lars"]
    train([*common, "trainer.epochs=2"], tmp_path / "run")
    before = tree(tmp_path / "run")
    with pytest.raises(HooptError, match=r"optimizer 'lars' schedules its learning rate over the run's length, so "
                                         r"resuming cannot lengthen .*trainer.epochs: 2 -> 4"):
        train([*common, "trainer.epochs=4", "resume=true"], tmp_path / "run")
    assert tree(tmp_path / "run") == before
    fixed = [*common, "+optimizer.total_steps=60"]
    train([*fixed, "trainer.epochs=4"], tmp_path / "fixed_full")
    train([*fixed, "trainer.epochs=2"], tmp_path / "fixed")
    train([*fixed, "trainer.epochs=4", "resume=true"], tmp_path / "fixed")
    assert_same_parameters(tmp_path / "fixed_full", tmp_path / "fixed")


def test_a_synthetic_objective_continues_to_a_raised_step_budget_only_with_its_interval_kept(tmp_path):
    from hoopt.runner.errors import HooptError

    common = ["model=rosenbrock", "optimizer=adam", "trainer.progress=false"]
    train([*common, "trainer.steps=80", "trainer.steps_per_epoch=10"], tmp_path / "full")
    train([*common, "trainer.steps=40", "trainer.steps_per_epoch=10"], tmp_path / "part")
    train([*common, "trainer.steps=80", "trainer.steps_per_epoch=10", "resume=true"], tmp_path / "part")
    assert_same_parameters(tmp_path / "full", tmp_path / "part")
    # steps/20 is the default evaluation interval: raising the steps alone would change it, so it is refused
    train([*common, "trainer.steps=40"], tmp_path / "default_interval")
    with pytest.raises(HooptError, match="trainer.steps_per_epoch: 2 in the checkpoint, 4 now"):
        train([*common, "trainer.steps=80", "resume=true"], tmp_path / "default_interval")


def test_checkpoints_are_verified_and_a_kill_between_the_two_replacements_is_safe(tmp_path):
    from hoopt.runner.errors import HooptError
    from hoopt.runner.training import checkpoint as ckpt

    state = {"model": {"w": torch.arange(1000.0)}, "epoch": 1, "step": 10, "config": "seed: 1\n"}
    ckpt.save_checkpoint(str(tmp_path), state)
    assert torch.equal(ckpt.load_checkpoint(str(tmp_path))["model"]["w"], state["model"]["w"])
    good = (tmp_path / "checkpoint.pt").read_bytes()

    flip_a_byte_in_the_tensor_data(tmp_path / "checkpoint.pt")
    with pytest.raises(HooptError, match="is corrupted"):
        ckpt.load_checkpoint(str(tmp_path))
    with open(tmp_path / "checkpoint.pt", "r+b") as f:  # 2 KB of garbage over the end
        f.write(good)
        f.seek(len(good) - 2048)
        f.write(os.urandom(2048))
    with pytest.raises(HooptError, match="is corrupted"):
        ckpt.load_checkpoint(str(tmp_path))
    (tmp_path / "checkpoint.pt").write_bytes(good)

    # A process killed after the sidecar was replaced but before the checkpoint was: the old checkpoint is
    # still listed, so it loads; the new one would have loaded too.
    real_replace = os.replace

    def killed_before_the_checkpoint(src, dst):
        if dst.endswith("checkpoint.pt"):
            raise KeyboardInterrupt
        real_replace(src, dst)

    os.replace = killed_before_the_checkpoint
    try:
        with pytest.raises(KeyboardInterrupt):
            ckpt.save_checkpoint(str(tmp_path), {**state, "model": {"w": torch.zeros(1000)}, "step": 20})
    finally:
        os.replace = real_replace
    assert torch.equal(ckpt.load_checkpoint(str(tmp_path))["model"]["w"], state["model"]["w"])
    leftovers = [p.name for p in tmp_path.iterdir() if ".tmp." in p.name]
    assert leftovers == [f"checkpoint.pt.tmp.{os.getpid()}"]  # the temporary file names its writer
    ckpt.remove_stale_temporaries(str(tmp_path))
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]

    (tmp_path / "checkpoint.json").unlink()
    with pytest.raises(HooptError, match="has no checksum"):
        ckpt.load_checkpoint(str(tmp_path))


def test_the_owner_removes_a_dead_writers_temporary_file(tmp_path):
    run_dir = tmp_path / "r"
    train([*SMALL, "trainer.epochs=2", "++trainer.interrupt_after_epoch=1"], run_dir)
    stale = run_dir / "checkpoint.pt.tmp.99999999"
    stale.write_bytes(b"half a checkpoint")
    train([*SMALL, "trainer.epochs=2", "resume=true"], run_dir)
    assert not stale.exists() and read_status(run_dir)["status"] == "completed"


def test_one_process_per_run_dir_and_a_dead_owners_lock_is_free(tmp_path):
    from hoopt.runner.errors import HooptError
    from hoopt.runner.training.run_dir import RunDirLock

    run_dir = tmp_path / "r"
    lock = RunDirLock.take(str(run_dir))
    lock.write_owner()
    with pytest.raises(HooptError, match=rf"in use by another hoopt-train \(process {os.getpid()} on "):
        train([*SMALL, "trainer.epochs=1"], run_dir)
    lock.release()
    # an owner that dies (SIGKILL) leaves the lock free: the kernel drops a dead process's flock
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from hoopt.runner.training.run_dir import RunDirLock; "
        f"RunDirLock.take({str(run_dir)!r}).write_owner(); print('held', flush=True); time.sleep(600)")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(HooptError, match="in use"):
        train([*SMALL, "trainer.epochs=1"], run_dir)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    train([*SMALL, "trainer.epochs=1"], run_dir)
    assert read_status(run_dir)["status"] == "completed"


def test_two_commands_started_together_on_one_dir_one_trains_the_other_is_refused(tmp_path):
    run_dir = tmp_path / "r"
    args = [*SMALL, "trainer.epochs=30", f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "PYTHONPATH": SUPPORT, "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}
    exe = shutil.which("hoopt-train", path=BIN)
    procs = [subprocess.Popen([exe, *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outcomes = sorted((p.wait(timeout=900), p.stderr.read()) for p in procs)
    assert [code for code, _ in outcomes] == [0, 2], outcomes
    assert "is in use by another hoopt-train" in outcomes[1][1] or "already holds a run" in outcomes[1][1], outcomes
    epochs = [m["epoch"] for m in read_metrics(run_dir) if "train/epoch_loss" in m]
    assert epochs == list(range(1, 31))  # one run's records, not two interleaved
    saved = json.loads((run_dir / "checkpoint.json").read_text())
    assert saved["config"] == torch.load(run_dir / "checkpoint.pt", weights_only=False)["config"]


def test_a_fresh_start_after_an_early_kill_begins_clean_logs(tmp_path):
    run_dir = tmp_path / "r"
    # an attempt killed before any checkpoint: its logs are there, nothing to resume from
    train([*SMALL, "trainer.epochs=3", "trainer.checkpoint=false", "++trainer.interrupt_after_epoch=2"], run_dir)
    assert not (run_dir / "checkpoint.pt").exists() and read_status(run_dir)["status"] == "running"
    old_events = {p.name for p in run_dir.iterdir() if p.name.startswith("events.out")}
    (run_dir / "checkpoint.pt.tmp.4242").write_bytes(b"x")
    train([*SMALL, "trainer.epochs=1"], run_dir)
    epochs = [m["epoch"] for m in read_metrics(run_dir) if "train/epoch_loss" in m]
    assert epochs == [1]  # not [1, 2, 1]
    events = {p.name for p in run_dir.iterdir() if p.name.startswith("events.out")}
    assert len(events) == 1 and not events & old_events
    assert not (run_dir / "checkpoint.pt.tmp.4242").exists()


def test_ctrl_c_in_a_run_records_where_it_stopped_and_it_resumes_exactly(tmp_path, monkeypatch):
    from hoopt.runner.errors import RunInterrupted
    from hoopt.runner.tasks.classification import ClassificationTask

    common = [*SMALL, "trainer.epochs=3"]
    train(common, tmp_path / "full")
    evaluate = ClassificationTask.evaluate
    calls = []

    def pressed_during_the_second_evaluation(self, model):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return evaluate(self, model)

    monkeypatch.setattr(ClassificationTask, "evaluate", pressed_during_the_second_evaluation)
    with pytest.raises(RunInterrupted) as stop:
        train(common, tmp_path / "part")
    monkeypatch.setattr(ClassificationTask, "evaluate", evaluate)
    assert (stop.value.epoch, stop.value.checkpoint) == (2, (1, 12))
    status = read_status(tmp_path / "part")
    assert status["status"] == "interrupted" and status["epoch"] == 2
    train([*common, "resume=true"], tmp_path / "part")  # the lock went with the interrupted run
    assert_same_parameters(tmp_path / "full", tmp_path / "part")


def test_ctrl_c_prints_one_line_with_the_command_that_resumes(tmp_path):
    run_dir = tmp_path / "r"
    args = [*SMALL, "trainer.epochs=60", f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "PYTHONPATH": SUPPORT, "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([shutil.which("hoopt-train", path=BIN), *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (run_dir / "checkpoint.json").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    line = lines[0]
    assert line.startswith("hoopt: stopped by Ctrl-C at epoch ") and str(run_dir) in line, line
    command = shlex.split(line.split("resume with: ", 1)[1])
    assert command[0] == "hoopt-train" and command[-1] == f"resume={run_dir}", command
    assert read_status(run_dir)["status"] == "interrupted"
    run_cli(command[1:], cwd=tmp_path)  # the printed command continues the run to its end
    assert read_status(run_dir)["status"] == "completed"
    epochs = [m["epoch"] for m in read_metrics(run_dir) if "train/epoch_loss" in m]
    assert epochs == list(range(1, 61))


def test_a_resumed_sweep_leaves_its_completed_jobs_as_they_are(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ["-m", "seed=0,1", *SMALL[:2], "trainer.epochs=1", "trainer.progress=false", f"hydra.sweep.dir={sweep_dir}"]
    run_cli(args, cwd=tmp_path)
    before = tree(sweep_dir)
    proc = run_cli([*args, "resume=true"], cwd=tmp_path)
    assert proc.stdout.count("already completed; left as it is") == 2, proc.stdout
    jobs = lambda found: {k: v for k, v in found.items() if k not in (".", "multirun.yaml")}  # noqa: E731
    assert jobs(tree(sweep_dir)) == jobs(before)  # multirun.yaml is the sweep's own record, rewritten by Hydra


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_run_dir_in_a_read_only_folder_is_one_sentence(tmp_path):
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        proc = run_cli([*SMALL, f"hydra.run.dir={folder / 'run'}"], cwd=tmp_path, check=False)
    finally:
        folder.chmod(0o700)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("hoopt: error: the run dir "), proc.stderr
    assert "is not writable" in proc.stderr and "Traceback" not in proc.stderr
