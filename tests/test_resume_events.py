"""A resumed run's TensorBoard events equal an uninterrupted run's, step for step: nothing the killed run logged
at its checkpoint's step is lost (the epoch's evaluation, the next epoch's probe), nothing is duplicated."""

import pytest

from conftest import read_status, tensorboard_tags, train

TIMING = ("time/", "memory/")  # wall-clock measurements differ between any two runs


def event_table(run_dir):
    events = tensorboard_tags(str(run_dir))
    scalars = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    images = {tag: [e.step for e in events.Images(tag)] for tag in events.Tags()["images"]}
    return scalars, images


@pytest.mark.parametrize("optimizer,extra", [
    ("adam", []),
    ("newton_summary", ["logger.image_every=12"]),
])
def test_resumed_event_file_equals_the_uninterrupted_one(tmp_path, optimizer, extra):
    common = ["dataset=digits", f"optimizer={optimizer}", "trainer.epochs=4", "seed=5", "logger.log_every=4",
              "+model.kwargs.hidden=[32,16]", *extra]
    full, part = tmp_path / "full", tmp_path / "part"
    train(common, full)
    train([*common, "++trainer.interrupt_after_epoch=2"], part)
    train([*common, "resume=true"], part)
    assert read_status(part)["status"] == "completed"
    full_scalars, full_images = event_table(full)
    part_scalars, part_images = event_table(part)
    assert set(part_scalars) == set(full_scalars)
    for tag, points in full_scalars.items():
        resumed = part_scalars[tag]
        assert [s for s, _ in resumed] == [s for s, _ in points], tag  # no hole, no duplicate
        if not tag.startswith(TIMING):
            assert [v for _, v in resumed] == pytest.approx([v for _, v in points]), tag
    assert part_images == full_images
    checkpoint_step = 2 * 12  # digits: 12 steps per epoch at batch 100
    assert any(step == checkpoint_step for step, _ in part_scalars["val/acc"])


def test_the_probe_before_an_epoch_survives_a_resume(tmp_path):
    common = ["dataset=digits", "optimizer=sgd", "trainer.epochs=3", "probe.enabled=true", "probe.max_examples=200",
              "+model.kwargs.hidden=[16]"]
    full, part = tmp_path / "full", tmp_path / "part"
    train(common, full)
    train([*common, "++trainer.interrupt_after_epoch=1"], part)
    train([*common, "resume=true"], part)
    full_scalars, full_images = event_table(full)
    part_scalars, part_images = event_table(part)
    assert full_images["probe/hbar/weight_weight"] == [0, 12, 24]  # before each of the three epochs
    assert part_images == full_images
    assert [v for _, v in part_scalars["probe/hbar_trace"]] == pytest.approx(
        [v for _, v in full_scalars["probe/hbar_trace"]])


def test_an_event_file_made_in_the_same_second_as_an_earlier_one_is_read_after_it(tmp_path):
    """TensorBoard reads event files in name order: second, host, pid, counter. A resume in the same second by a
    process whose pid sorts first (9999 before an earlier 10001, as text) would be read first, and the earlier
    file's events dropped as out of order."""
    import socket
    import time

    from hoopt.runner.training.logger import RunLogger

    earlier = tmp_path / f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.99999999.9"
    earlier.write_bytes(b"")
    RunLogger(str(tmp_path), resume_step=None).close()
    names = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("events.out.tfevents."))
    assert len(names) == 2 and names[0] == earlier.name
