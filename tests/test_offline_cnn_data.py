"""digits32: an offline dataset the convolutional models accept, so every model can be tried without a download."""

import re

import pytest
import torch

from conftest import compose, read_status, train


def test_digits32_is_digits_at_32x32_with_three_channels():
    from hoopt.runner.data.digits import load_digits_dataset
    from hoopt.runner.data.digits32 import load_digits32_dataset

    small, large = load_digits_dataset(), load_digits32_dataset()
    assert large.name == "digits32" and large.input_shape == (3, 32, 32) and large.num_classes == 10
    for split in ("train", "val", "test"):
        a, b = small.splits()[split], large.splits()[split]
        assert torch.equal(a.targets, b.targets)  # the same examples in the same 70/10/20 split
        assert b.inputs.shape == (len(a), 3, 32, 32)
        assert torch.equal(b.inputs[:, 0], b.inputs[:, 1]) and torch.equal(b.inputs[:, 0], b.inputs[:, 2])
        # the same images: averaging 4 x 4 blocks gives back the 8 x 8 digit up to an affine map
        pooled = torch.nn.functional.avg_pool2d(b.inputs[:, :1], 4).reshape(len(a), -1)
        original = a.inputs.reshape(len(a), -1)
        correlation = torch.corrcoef(torch.stack([pooled.reshape(-1), original.reshape(-1)]))[0, 1]
        assert correlation > 0.97
    assert abs(float(large.train.inputs.mean())) < 1e-4 and abs(float(large.train.inputs.std()) - 1) < 1e-4


@pytest.mark.parametrize("model", ["lenet", pytest.param("vgg", marks=pytest.mark.slow),
                                   pytest.param("resnet18", marks=pytest.mark.slow)])
def test_every_cnn_trains_offline_on_digits32(model, tmp_path):
    # resnet18's paper batch (2048) is larger than digits' 1,258 training images
    result = train([f"model={model}", "dataset=digits32", "trainer.steps=3", "trainer.batch_size=64"], tmp_path)
    assert result["status"] == "completed" and read_status(tmp_path)["status"] == "completed"


def test_the_offline_advice_names_a_dataset_that_works_for_the_model(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as cifar
    from torchvision.datasets.utils import check_integrity

    from hoopt.runner.errors import HooptError
    from hoopt.runner.training.build import build_dataset

    monkeypatch.setattr(cifar, "check_integrity", check_integrity)  # missing files must look missing here

    cfg = compose("model=lenet", f"dataset.root={tmp_path / 'empty'}", "dataset.download=false")
    with pytest.raises(HooptError) as error:
        build_dataset(cfg)
    named = re.findall(r"dataset=(\w+)", str(error.value))
    assert "digits32" in named
    result = train(["model=lenet", "dataset=digits32", "trainer.steps=2"], tmp_path / "run")
    assert result["status"] == "completed"
