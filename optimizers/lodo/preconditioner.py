"""LODO's block-permutation preconditioner Q(theta) = E^T A^T A E, A = B_N P_N ... B_1 P_1 (arXiv:2210.06171,
Section 3, Eq. 2; docs/methods/lodo.md).

E zero-pads R^n into R^m (m = 2n + k - (2n mod k), a multiple of k), P_j are fixed random permutations
of m entries and B_j block-diagonal with m/k blocks of k x k (the learned theta, N*k*m numbers).

Layout, chosen for speed: a vector of R^m is stored as (k, M) with M = m/k, entry t = l*M + b being entry l
of block b, and the blocks of layer j as ``blocks[j, i, l, b]`` = (block b)[i, l]. Since the P_j are
uniformly random, which entries form a block is immaterial; this "structure of arrays" layout turns every
block product into k multiply-adds over contiguous rows of length M (several times faster than a batched
k x k matmul on the CPU). Stacks of c vectors are (c, m) and go through the layers together (the hypergradient pushes
g and m through A side by side).
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..validation import require_int

from .base import PermutedPreconditioner, as_columns

# Orthogonal blocks are generated in chunks of this many blocks, so generation memory stays bounded on
# large models; fixed so that a seed always gives the same blocks.
_GENERATION_CHUNK = 1 << 20


def padded_size(n: int, block_size: int) -> int:
    """m = 2n + k - (2n mod k): twice the parameter count, rounded up to a multiple of k."""
    return 2 * n + block_size - (2 * n) % block_size


def index_dtype(m: int) -> torch.dtype:
    """int32 indices halve the memory of the permutations; int64 only past 2^31 entries."""
    return torch.int32 if m < 2**31 else torch.int64


def random_permutations(depth: int, m: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``depth`` uniform permutations of m entries and their inverses, as gather indices (CPU).

    P_j acts as a gather, (P_j v)[i] = v[perms[j, i]]; P_j^T gathers with the inverse permutation.
    """
    dtype = index_dtype(m)
    perms = torch.empty(depth, m, dtype=dtype)
    inverses = torch.empty(depth, m, dtype=dtype)
    positions = torch.arange(m, dtype=dtype)
    for j in range(depth):
        perm = torch.randperm(m, generator=generator)
        perms[j] = perm
        inverses[j].index_copy_(0, perm, positions)  # inverse[perm[i]] = i
    return perms, inverses


def random_orthogonal_blocks(count: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` Haar-random orthogonal k x k matrices as a float64 (k, k, count) tensor (CPU).

    Gram-Schmidt on Gaussian columns (with one re-orthogonalisation pass) is the Q of a QR decomposition
    with positive diag(R), which is Haar distributed; done column-wise over all blocks at once.
    """
    out = torch.empty(k, k, count, dtype=torch.float64)
    for start in range(0, count, _GENERATION_CHUNK):
        size = min(_GENERATION_CHUNK, count - start)
        gauss = torch.randn(k, k, size, generator=generator, dtype=torch.float64)
        q = torch.empty_like(gauss)
        for col in range(k):
            v = gauss[:, col].clone()
            for _ in range(2):  # "twice is enough" for Gram-Schmidt
                for prev in range(col):
                    v -= (q[:, prev] * v).sum(0) * q[:, prev]
            q[:, col] = v / v.norm(dim=0)
        out[..., start:start + size] = q
    return out


def block_product(block: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """(B u)[c, i, b] = sum_l B[i, l, b] u[c, l, b] for one layer's blocks (k, k, M) and u (c, k, M).

    k fused multiply-adds over (c, k, M): no (c, k, k, M) temporary, which at scale costs more in memory
    traffic than the arithmetic.
    """
    k = block.shape[0]
    y = block[:, 0] * u[:, 0:1]
    for col in range(1, k):
        y = y.addcmul_(block[:, col], u[:, col:col + 1])
    return y


def block_transpose_product(block: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B^T y)[c, l, b] = sum_i B[i, l, b] y[c, i, b]."""
    k = block.shape[0]
    u = block[0] * y[:, 0:1]
    for row in range(1, k):
        u = u.addcmul_(block[row], y[:, row:row + 1])
    return u


def apply_block_permutation(blocks: Sequence[torch.Tensor], perms: Sequence[torch.Tensor], x: torch.Tensor,
                            saved: list[torch.Tensor] | None = None) -> torch.Tensor:
    """A x for a stack x of shape (c, m); ``blocks`` (N, k, k, M) and ``perms`` (N, m), or per-layer lists.

    Appends each layer's permuted input, viewed (c, k, M), to ``saved`` if given. Built from
    differentiable ops only, so tests can take autograd through it.
    """
    c = x.shape[0]
    for block, perm in zip(blocks, perms):
        k, _, count = block.shape
        u = x.index_select(1, perm).view(c, k, count)  # P_j x
        if saved is not None:
            saved.append(u)
        x = block_product(block, u).view(c, -1)
    return x


def _transpose_layer(block: torch.Tensor, inverse: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """P_j^T B_j^T y for a stack y of shape (c, m)."""
    c = y.shape[0]
    k, _, count = block.shape
    return block_transpose_product(block, y.view(c, k, count)).view(c, -1).index_select(1, inverse)


def apply_block_permutation_transpose(blocks: Sequence[torch.Tensor], inverses: Sequence[torch.Tensor],
                                      y: torch.Tensor) -> torch.Tensor:
    """A^T y for a stack y of shape (c, m); ``inverses`` are the inverse permutations."""
    for block, inverse in zip(reversed(blocks), reversed(inverses)):
        y = _transpose_layer(block, inverse, y)
    return y


def block_permutation_pair_gradient(blocks: Sequence[torch.Tensor], perms: Sequence[torch.Tensor],
                                    inverses: Sequence[torch.Tensor], pair: torch.Tensor,
                                    out: torch.Tensor | None = None) -> torch.Tensor:
    """d/d blocks of <A a, A b> for pair = stack (a, b) of shape (2, m): reverse mode, written out.

    Layer j maps u_j = P_j x_{j-1} to x_j = B_j u_j; with ybar_j the adjoint of x_j,
    dB_j[i, l, b] = sum_c ybar_j[c, i, b] u_j[c, l, b] and ybar_{j-1} = P_j^T B_j^T ybar_j.
    At the top, d<x_a, x_b>/dx_a = x_b and vice versa, so the adjoint stack is the output stack flipped.
    Returns an (N, k, k, M) tensor (written into ``out`` when given).
    """
    saved: list[torch.Tensor] = []
    ybar = apply_block_permutation(blocks, perms, pair, saved).flip(0)
    depth = len(saved)
    k, _, count = blocks[0].shape
    grads = out if out is not None else pair.new_empty(depth, k, k, count)
    for j in reversed(range(depth)):
        y, u = ybar.view(2, k, 1, count), saved[j].unsqueeze(1)  # (2, k, 1, M) and (2, 1, k, M)
        torch.mul(y[0], u[0], out=grads[j]).addcmul_(y[1], u[1])
        if j > 0:
            ybar = _transpose_layer(blocks[j], inverses[j], ybar)
    return grads


def dense_block_permutation_operator(blocks: torch.Tensor, perms: torch.Tensor, n: int) -> torch.Tensor:
    """A E as an explicit dense (m, n) matrix, built from dense P_j and B_j (tests; small n only).

    Independent of the fast path: every factor is materialised and multiplied out.
    """
    depth, k, _, count = blocks.shape
    m = k * count
    a = torch.eye(m, dtype=blocks.dtype, device=blocks.device)
    rows = torch.arange(m, device=blocks.device)
    block_of = rows % count  # entry t = l*M + b belongs to block b at position l
    position = rows // count
    for j in range(depth):
        p = torch.zeros(m, m, dtype=blocks.dtype, device=blocks.device)
        p[rows, perms[j].long()] = 1.0
        b = torch.zeros(m, m, dtype=blocks.dtype, device=blocks.device)
        same_block = block_of.unsqueeze(1) == block_of.unsqueeze(0)
        values = blocks[j][position.unsqueeze(1), position.unsqueeze(0), block_of.unsqueeze(1)]
        b[same_block] = values[same_block]
        a = b @ p @ a
    return a[:, :n]


class BlockPermutationPreconditioner(PermutedPreconditioner):
    """Q = E^T A^T A E with blocks started as random orthogonal matrices, so Q(theta_0) = I (Section 3)."""

    kind = "blocks"

    def __init__(self, n: int, block_size: int = 4, depth: int = 16, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
        super().__init__(n)
        block_size, depth = require_int("block_size", block_size, minimum=1), require_int("depth", depth, minimum=1)
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.block_size, self.depth = block_size, depth
        self.m = padded_size(n, block_size)
        self.count = self.m // block_size
        perms, inverses = random_permutations(depth, self.m, generator)
        self.perms, self.inverses = perms.to(device), inverses.to(device)
        self.blocks = torch.empty(depth, block_size, block_size, self.count, dtype=dtype, device=device)
        for j in range(depth):  # one layer at a time: bounded float64 scratch on large models
            self.blocks[j] = random_orthogonal_blocks(self.count, block_size, generator).to(dtype)
        self._index_layers()

    def _index_layers(self) -> None:
        """Per-layer views (the meta-optimizer and loading update the tensors in place, so they stay valid)."""
        self._layers = list(self.blocks)
        self._perm_layers, self._inverse_layers = list(self.perms), list(self.inverses)

    @staticmethod
    def memory_numel(n: int, block_size: int = 4, depth: int = 16) -> dict[str, int]:
        """Entries kept (theta, index entries) and the peak working set of one step, for memory.py."""
        m = padded_size(n, block_size)
        return {
            "theta": depth * block_size * m,
            "index_entries": 2 * depth * m,
            "index_bytes": torch.empty((), dtype=index_dtype(m)).element_size(),
            # hypergradient: the permuted pair at every layer, plus a few (2, m) temporaries
            "workspace": 2 * depth * m + 8 * m,
        }

    def parameters(self) -> list[torch.Tensor]:
        return [self.blocks]

    def _pad(self, v: torch.Tensor) -> torch.Tensor:
        x = v.new_zeros(v.shape[0], self.m)
        x[:, :self.n] = v
        return x

    def apply(self, v: torch.Tensor) -> torch.Tensor:
        cols, single = as_columns(v, self.n)
        y = apply_block_permutation(self._layers, self._perm_layers, self._pad(cols))
        out = apply_block_permutation_transpose(self._layers, self._inverse_layers, y)[:, :self.n]
        return out[0] if single else out

    def bilinear_gradient(self, g: torch.Tensor, m: torch.Tensor) -> list[torch.Tensor]:
        pair = self._pad(torch.stack((g, m)))
        # reuse the meta-gradient buffer: a fresh N*k*m allocation every step costs page faults
        return [block_permutation_pair_gradient(self._layers, self._perm_layers, self._inverse_layers, pair,
                                                out=self.blocks.grad)]

