import pytest
import torch

from fake_data import write_cifar10, write_mnist
from hoopt.runner.data import load_dataset
from hoopt.runner.data.augment import random_crop_flip
from hoopt.runner.data.dataset import Dataset, Split
from hoopt.runner.data.mnist_pixels import (PIXELS, encode_queries, every_position_batches,
                                           every_position_test_metrics, mean_loss_over_every_position)
from hoopt.runner.errors import HooptError


def test_digits_split_and_normalisation():
    ds = load_dataset("digits")
    assert ds.input_shape == (1, 8, 8) and ds.num_classes == 10
    assert len(ds.train) + len(ds.val) + len(ds.test) == 1797
    assert abs(ds.train.inputs.mean().item()) < 1e-5 and ds.train.inputs.std().item() == pytest.approx(1, abs=1e-4)
    assert set(ds.train.targets.unique().tolist()) == set(range(10))
    again = load_dataset("digits")
    assert torch.equal(ds.test.inputs, again.test.inputs)  # the same split every time


def test_mnist_from_idx_files(tmp_path):
    raw = write_mnist(str(tmp_path), n_train=100, n_test=30)
    ds = load_dataset("mnist", str(tmp_path), download=False)
    assert ds.input_shape == (1, 28, 28)
    assert len(ds.train) == 90 and len(ds.val) == 10 and len(ds.test) == 30  # a tenth held out for a small copy
    expected = (torch.tensor(raw[0], dtype=torch.float32) / 255 - 0.1307) / 0.3081
    assert torch.allclose(ds.train.inputs[0, 0], expected)


def test_cifar10_from_pickled_batches(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda *a, **k: True)  # test files cannot match the MD5s
    first = write_cifar10(str(tmp_path), n_per_batch=20, n_test=10)
    ds = load_dataset("cifar10", str(tmp_path), download=False)
    assert len(ds.train) == 90 and len(ds.val) == 10 and len(ds.test) == 10
    image = torch.tensor(first[0].reshape(3, 32, 32), dtype=torch.float32) / 255
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616]).view(3, 1, 1)
    assert torch.allclose(ds.train.inputs[0], (image - mean) / std, atol=1e-6)


def test_missing_files_offline_is_one_clear_sentence(tmp_path):
    with pytest.raises(HooptError) as info:
        load_dataset("mnist", str(tmp_path / "nowhere"), download=False)
    message = str(info.value)
    assert "nowhere" in message and "dataset=digits" in message and "\n" not in message


def test_mnist_pixels_encoding_on_a_hand_made_image():
    image = torch.arange(784).remainder(256).view(1, 1, 28, 28)
    query = 2 * 28 + 5  # row 2, column 5
    channels, target = encode_queries(image, torch.tensor([query]))
    assert channels.shape == (1, 5, 28, 28) and target.item() == query % 256
    visible = channels[0, 2].flatten() > 0
    assert visible[:query].all() and not visible[query:].any()
    expected = torch.where(visible, image.flatten().float() / 256, torch.zeros(()))
    assert torch.equal(channels[0, 0].flatten(), expected)  # later pixels (and the query) are blackened
    assert (channels[0, 1, :, :6] == 1).all() and (channels[0, 1, :, 6:] == -1).all()
    # the authors' ramps: channel 3 follows the row, channel 4 the column, k / 28 * 2 - 1 for k = 0..27
    ramp = torch.arange(28) / 28 * 2 - 1
    assert torch.equal(channels[0, 3], ramp.view(28, 1).expand(28, 28))
    assert torch.equal(channels[0, 4], ramp.view(1, 28).expand(28, 28))
    assert channels[0, 3].min() == -1 and channels[0, 3].max() == pytest.approx(26 / 28)


def test_mnist_pixels_dataset_fixed_eval_queries(tmp_path):
    write_mnist(str(tmp_path), n_train=50, n_test=20)
    ds = load_dataset("mnist_pixels", str(tmp_path), download=False)
    assert ds.num_classes == 256 and ds.input_shape == (5, 28, 28)
    a = ds.make_batch(ds.test.inputs, ds.test.targets, None)
    b = ds.make_batch(ds.test.inputs, ds.test.targets, None)
    assert torch.equal(a[0], b[0])
    g = torch.Generator().manual_seed(0)
    c = ds.make_batch(ds.test.inputs, ds.test.targets, g)
    assert not torch.equal(a[0], c[0])


def test_every_position_batches_cover_each_images_784_queries_in_raster_order():
    images = torch.randint(0, 256, (3, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    batches = list(every_position_batches(images, pairs_per_batch=1000))
    assert [len(t) for _, t in batches] == [1000, 1000, 352]
    inputs = torch.cat([i for i, _ in batches])
    targets = torch.cat([t for _, t in batches])
    assert torch.equal(targets, images.flatten().long())  # image by image, raster order
    pairs = torch.arange(3 * PIXELS)
    expected_inputs, _ = encode_queries(images[pairs // PIXELS], pairs % PIXELS)
    assert torch.equal(inputs, expected_inputs)


def test_the_papers_test_loss_averages_over_all_784_query_positions():
    """The authors' test loss: cross-entropy averaged over every (image, query position) pair, not one fixed query
    per image."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(5, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 256))
    images = torch.randint(0, 256, (2, 1, 28, 28), generator=torch.Generator().manual_seed(1))
    losses = []
    for image in images:
        for q in range(PIXELS):
            inputs, target = encode_queries(image[None], torch.tensor([q]))
            losses.append(torch.nn.functional.cross_entropy(model(inputs), target).item())
    expected = sum(losses) / len(losses)
    assert mean_loss_over_every_position(model, images, pairs_per_batch=500) == pytest.approx(expected, rel=1e-6)
    assert model.training  # left as it was
    dataset = Dataset("mnist_pixels", (5, 28, 28), 256, Split(images, torch.zeros(2)), None,
                      Split(images, torch.zeros(2, dtype=torch.long)))
    metrics = every_position_test_metrics(model, dataset, pairs_per_batch=784)
    assert metrics == {"test/loss_all_positions": pytest.approx(expected, rel=1e-6)}


def test_crop_flip_is_a_shifted_window():
    images = torch.randn(64, 3, 8, 8)
    out = random_crop_flip(images, torch.Generator().manual_seed(1), padding=2)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    flips = 0
    for i in range(64):
        windows = [padded[i, :, y:y + 8, x:x + 8] for y in range(5) for x in range(5)]
        plain = any(torch.equal(out[i], w) for w in windows)
        flipped = any(torch.equal(out[i], w.flip(-1)) for w in windows)
        assert plain or flipped
        flips += flipped and not plain
    assert 10 < flips < 54
