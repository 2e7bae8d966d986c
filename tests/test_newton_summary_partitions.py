"""Partitions (Appendix 0.J, docs/methods/newton_summary.md): subset counts on the paper networks, readable
names, clear errors."""

import pytest

from hoopt.models import build_model
from hoopt.optimizers.newton_summary import NewtonSummary, build_partition


def names_of(model_name, **kwargs):
    return [n for n, _ in build_model(model_name, **kwargs).named_parameters()]


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


def test_every_parameter_in_exactly_one_group():
    names = names_of("vgg")
    for spec in ("canonical", "trivial", "weights-biases", "blocks-1", "blocks-2", "blocks-4", "alternate-2",
                 "alternate-4", "chunks-3"):
        partition = build_partition(spec, names)
        flat = [n for g in partition.groups for n in g]
        assert sorted(flat) == sorted(names), spec


def test_vgg_block_counts_and_names():
    names = names_of("vgg")  # 8 convolutions + the classifier
    for k in (1, 2, 4, 8):
        assert build_partition(f"blocks-{k}", names).size == 2 * k + 2
        assert build_partition(f"alternate-{k}", names).size == 2 * k + 2
    blocks = build_partition("blocks-2", names)
    assert blocks.group_names == ("block1/weights", "block1/biases", "block2/weights", "block2/biases",
                                  "classifier.weight", "classifier.bias")
    assert blocks.groups[0] == tuple(f"features.{i}.weight" for i in (0, 3, 6, 8))
    alternate = build_partition("alternate-2", names)
    assert alternate.groups[0] == tuple(f"features.{i}.weight" for i in (0, 6, 11, 16))


def test_readable_names():
    assert build_partition("canonical", names_of("mlp")).group_names[:2] == ("f1.weight", "f1.bias")
    assert build_partition("canonical", names_of("lenet")).group_names[-1] == "f3.bias"
    assert build_partition("trivial", names_of("mlp")).group_names == ("all",)
    assert build_partition("weights-biases", names_of("mlp")).group_names == ("weights", "biases")


def test_clear_errors():
    names = names_of("mlp")
    with pytest.raises(ValueError, match=r"blocks-50.*4 layers.*between 1 and 3"):
        build_partition("blocks-50", names)
    with pytest.raises(ValueError, match=r"alternate-0.*between 1 and 3"):
        build_partition("alternate-0", names)
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
