"""Partitions (Appendix 0.J, docs/methods/newton_summary.md): subset counts on the paper networks, readable
names, clear errors."""

import pytest

from hoopt.models import build_model
from hoopt.optimizers.newton_summary import NewtonSummary, build_partition


def names_of(model_name, **kwargs):
    return [n for n, _ in build_model(model_name, **kwargs).named_parameters()]


def params_of(model_name, **kwargs):
    return list(build_model(model_name, **kwargs).named_parameters())


@pytest.mark.parametrize("model,kwargs,expected", [
    ("mlp", {}, 8), ("lenet", {}, 10), ("vgg", {}, 18), ("bigmlp", {"width": 8}, 42),
])
def test_canonical_counts(model, kwargs, expected):
    assert build_partition("canonical", names_of(model, **kwargs)).size == expected


def test_vbigmlp_chunks():
    names = names_of("vbigmlp", width=4)
    partition = build_partition("chunks-5", names)
    assert partition.size == 10
    assert partition.group_names[:2] == ("chunk1/weights", "chunk1/biases")
    # 101 layers in 5 consecutive chunks: 21, 20, 20, 20, 20
    assert [len(g) for g in partition.groups[::2]] == [21, 20, 20, 20, 20]
    assert partition.groups[-1][-1] == names[-1]


@pytest.mark.parametrize("model", ["vgg", "mlp"])
def test_every_parameter_in_exactly_one_group(model):
    params = params_of(model)
    names = [n for n, _ in params]
    for spec in ("canonical", "trivial", "weights-biases", "blocks-1", "blocks-2", "blocks-3", "alternate-2",
                 "alternate-3", "chunks-3"):
        partition = build_partition(spec, params)
        flat = [n for g in partition.groups for n in g]
        assert sorted(flat) == sorted(names), spec


def test_vgg_block_counts_and_names():
    names = params_of("vgg")  # 8 convolutions + the classifier, kept apart (the released code's VGG rule)
    for k in (1, 2, 4, 8):
        assert build_partition(f"blocks-{k}", names).size == 2 * k + 2
        assert build_partition(f"alternate-{k}", names).size == 2 * k + 2
    assert build_partition("blocks-2", params_of("lenet")).size == 6  # LeNet is convolutional too
    blocks = build_partition("blocks-2", names)
    assert blocks.group_names == ("block1/weights", "block1/biases", "block2/weights", "block2/biases",
                                  "classifier.weight", "classifier.bias")
    assert blocks.groups[0] == tuple(f"features.{i}.weight" for i in (0, 3, 6, 8))
    alternate = build_partition("alternate-2", names)
    assert alternate.groups[0] == tuple(f"features.{i}.weight" for i in (0, 6, 11, 16))


def test_mlp_blocks_include_the_classifier_as_the_released_code_does():
    """The released Perceptron.partition: k blocks over all layers, classifier included, sizes as even as possible
    with the first ones larger; alternate-k sends layer l (classifier included) to block l mod k. S = 2k."""
    params = params_of("mlp")  # f1..f4, f4 the classifier
    blocks = build_partition("blocks-3", params)
    assert blocks.size == 6
    assert blocks.groups == (("f1.weight", "f2.weight"), ("f1.bias", "f2.bias"), ("f3.weight",), ("f3.bias",),
                             ("f4.weight",), ("f4.bias",))
    assert build_partition("blocks-4", params).size == 8  # every layer its own block: canonical, regrouped
    alternate = build_partition("alternate-2", params)
    assert alternate.groups == (("f1.weight", "f3.weight"), ("f1.bias", "f3.bias"), ("f2.weight", "f4.weight"),
                                ("f2.bias", "f4.bias"))
    assert build_partition("blocks-2", params_of("bigmlp", width=8)).size == 4  # 21 layers in 2 blocks
    with pytest.raises(ValueError, match="needs the tensors with their names"):
        build_partition("blocks-2", names_of("mlp"))  # the rule depends on the tensors' shapes


def test_readable_names():
    assert build_partition("canonical", names_of("mlp")).group_names[:2] == ("f1.weight", "f1.bias")
    assert build_partition("canonical", names_of("lenet")).group_names[-1] == "f3.bias"
    assert build_partition("trivial", names_of("mlp")).group_names == ("all",)
    assert build_partition("weights-biases", names_of("mlp")).group_names == ("weights", "biases")


def test_clear_errors():
    names = names_of("mlp")
    params = params_of("mlp")
    with pytest.raises(ValueError, match=r"blocks-50.*4 layers.*between 1 and 4"):
        build_partition("blocks-50", params)
    with pytest.raises(ValueError, match=r"alternate-0.*between 1 and 4"):
        build_partition("alternate-0", params)
    with pytest.raises(ValueError, match=r"blocks-9.*the last one kept apart.*between 1 and 4"):
        build_partition("blocks-9", params_of("lenet"))
    with pytest.raises(ValueError, match=r"chunks-9.*between 1 and 4"):
        build_partition("chunks-9", names)
    with pytest.raises(ValueError, match="unknown partition 'diagonal'"):
        build_partition("diagonal", names)
    with pytest.raises(ValueError, match="whole number"):
        build_partition("blocks-x", names)
    model = build_model("mlp")
    with pytest.raises(ValueError, match="blocks-50"):
        NewtonSummary(model.named_parameters(), partition="blocks-50",
                      summary_loss=lambda params: sum(p.sum() for p in params.values()))
