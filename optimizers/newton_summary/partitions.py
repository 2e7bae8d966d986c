"""Partitions of the parameter tensors into S subsets (arXiv:2312.03885, 2024 version, Appendix 0.J;
docs/methods/newton_summary.md, "Partitions").

Layers are derived from parameter names: the module prefix (``layers.f1`` of ``layers.f1.weight``) is the
layer, the suffix says weight or bias (``bias`` is a bias, anything else counts as a weight). Layers are
ordered as ``named_parameters`` lists them, which is the forward order for the paper networks.

Spellings (also from config, ``optimizer.partition=blocks-4``):
- ``canonical``: one subset per tensor (S = 8 MLP, 10 LeNet, 18 VGG-11', 42 BigMLP);
- ``trivial``: one subset (S = 1);
- ``weights-biases``: all weights, all biases (S = 2);
- ``blocks-k``: the layers in k consecutive blocks, each split into weights and biases. As in the released code,
  the rule depends on the architecture: on a convolutional model (any weight with more than two dimensions:
  LeNet, VGG-11') the classifier (the last layer) is kept apart as two subsets of its own and the blocks cover
  the layers before it (S = 2k + 2); on an MLP (MLP, BigMLP) the classifier is inside the last block (S = 2k);
- ``alternate-k``: like blocks-k, but layer l (counted from 0; on a convolutional model the classifier
  excluded) goes to block l mod k;
- ``chunks-k``: all layers, classifier included, in k consecutive chunks x {weights, biases} (VBigMLP's
  10-subset partition is ``chunks-5``, Appendix 0.H).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

SPELLINGS = "canonical, trivial, weights-biases, blocks-k, alternate-k, chunks-k"


@dataclass(frozen=True)
class Partition:
    """S groups of parameter names; ``group_names[i]`` labels ``groups[i]`` (axes of the heatmaps)."""

    group_names: tuple[str, ...]
    groups: tuple[tuple[str, ...], ...]

    def __post_init__(self):
        if len(self.group_names) != len(self.groups):
            raise ValueError("a partition needs exactly one name per group")
        seen = [name for group in self.groups for name in group]
        if len(seen) != len(set(seen)):
            raise ValueError("a parameter appears in two groups of the partition")
        if any(len(group) == 0 for group in self.groups):
            raise ValueError("a partition cannot have an empty group")

    @property
    def size(self) -> int:
        return len(self.groups)

    def group_of(self) -> dict[str, int]:
        """Parameter name -> index of its group."""
        return {name: i for i, group in enumerate(self.groups) for name in group}


def _names(params: Iterable) -> tuple[list[str], dict[str, object]]:
    """The names, and the tensors by name when (name, tensor) pairs were given."""
    names, tensors = [], {}
    for item in params:
        if isinstance(item, tuple):
            names.append(item[0])
            tensors[item[0]] = item[1]
        else:
            names.append(item)
    if not all(isinstance(n, str) for n in names):
        raise ValueError("build_partition needs parameter names (pairs from model.named_parameters())")
    return names, tensors


def _convolutional(spec: str, names: list[str], tensors: dict[str, object]) -> bool:
    """Whether some weight has more than two dimensions (a convolution); the blocks rule depends on it."""
    if len(tensors) != len(names):
        raise ValueError(f"partition '{spec}' needs the tensors with their names (model.named_parameters()): "
                         f"whether the classifier is kept apart depends on the model having convolutions")
    return any(getattr(tensors[n], "dim", lambda: 0)() > 2 for n in names if not _is_bias(n))


def _split(name: str) -> tuple[str, str]:
    """'layers.f1.weight' -> ('layers.f1', 'weight'); a top-level tensor is its own layer."""
    prefix, _, suffix = name.rpartition(".")
    return (prefix or name), suffix


def _short(names: Sequence[str]) -> list[str]:
    """Strip the module prefix shared by all names ('layers.f1.weight' -> 'f1.weight') for readability."""
    parts = [n.split(".") for n in names]
    common = 0
    while all(len(p) > common + 1 for p in parts) and len({p[common] for p in parts}) == 1:
        common += 1
    return [".".join(p[common:]) for p in parts]


def _layers(names: Sequence[str]) -> list[str]:
    layers: list[str] = []
    for name in names:
        layer = _split(name)[0]
        if layer not in layers:
            layers.append(layer)
    return layers


def _is_bias(name: str) -> bool:
    return _split(name)[1] == "bias"


def _by_role(names: Sequence[str], layer_to_block: dict[str, int], blocks: int, label: str):
    """Groups 'label{b}/weights' and 'label{b}/biases' of the layers mapped to block b; empty groups dropped."""
    group_names, groups = [], []
    for block in range(blocks):
        for role, wanted in (("weights", False), ("biases", True)):
            members = tuple(n for n in names
                            if layer_to_block.get(_split(n)[0]) == block and _is_bias(n) == wanted)
            if members:
                group_names.append(f"{label}{block + 1}/{role}")
                groups.append(members)
    return group_names, groups


def _parse_count(spec: str, kind: str, low: int, high: int, layers: list[str], note: str) -> int:
    text = spec[len(kind) + 1:]
    if not text.isdigit():
        raise ValueError(f"partition '{spec}' needs a whole number after '{kind}-', e.g. '{kind}-2'")
    k = int(text)
    if not low <= k <= high:
        fits = f"between {low} and {high}" if low <= high else "none (the model has too few layers)"
        shown = ", ".join(_short(layers)[:6]) + (", ..." if len(layers) > 6 else "")
        raise ValueError(f"partition '{spec}' does not fit this model: it has {len(layers)} layers ({shown}){note}, "
                         f"so k must be {fits}")
    return k


def build_partition(spec: str | Partition, params: Iterable) -> Partition:
    """The partition called ``spec`` of the parameters (names or (name, tensor) pairs, in forward order)."""
    if isinstance(spec, Partition):
        return spec
    names, tensors = _names(params)
    if not names:
        raise ValueError("cannot partition an empty list of parameters")
    short = dict(zip(names, _short(names)))
    layers = _layers(names)
    spec = spec.strip().lower()
    if spec == "canonical":
        return Partition(tuple(short[n] for n in names), tuple((n,) for n in names))
    if spec == "trivial":
        return Partition(("all",), (tuple(names),))
    if spec == "weights-biases":
        weights = tuple(n for n in names if not _is_bias(n))
        biases = tuple(n for n in names if _is_bias(n))
        pairs = [(label, g) for label, g in (("weights", weights), ("biases", biases)) if g]
        return Partition(tuple(p[0] for p in pairs), tuple(p[1] for p in pairs))
    if spec.startswith("blocks-") or spec.startswith("alternate-"):
        kind = spec.split("-")[0]
        if spec[len(kind) + 1:].isdigit() and _convolutional(spec, names, tensors):
            body, classifier, note = layers[:-1], layers[-1], ", the last one kept apart as the classifier"
        else:  # an MLP, as the released code partitions it: the classifier is one more layer of the blocks
            body, classifier, note = layers, None, ""
        k = _parse_count(spec, kind, 1, len(body), layers, note)
        if kind == "blocks":  # k consecutive blocks, sizes as even as possible (the first ones one larger)
            sizes = [len(body) // k + (1 if b < len(body) % k else 0) for b in range(k)]
            mapping, start = {}, 0
            for b, size in enumerate(sizes):
                mapping.update({layer: b for layer in body[start:start + size]})
                start += size
        else:
            mapping = {layer: i % k for i, layer in enumerate(body)}
        group_names, groups = _by_role(names, mapping, k, "block")
        for n in names:  # the classifier's tensors, each a subset of its own
            if _split(n)[0] == classifier:
                group_names.append(short[n])
                groups.append((n,))
        return Partition(tuple(group_names), tuple(groups))
    if spec.startswith("chunks-"):
        k = _parse_count(spec, "chunks", 1, len(layers), layers, "")
        sizes = [len(layers) // k + (1 if b < len(layers) % k else 0) for b in range(k)]
        mapping, start = {}, 0
        for b, size in enumerate(sizes):
            mapping.update({layer: b for layer in layers[start:start + size]})
            start += size
        group_names, groups = _by_role(names, mapping, k, "chunk")
        return Partition(tuple(group_names), tuple(groups))
    raise ValueError(f"unknown partition '{spec}'; choose one of: {SPELLINGS} (k a whole number)")
