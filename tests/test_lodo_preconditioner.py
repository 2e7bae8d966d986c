"""LODO's block-permutation preconditioner (docs/methods/lodo.md) against dense matrices built from the same factors."""

import pytest
import torch

from hoopt.optimizers.lodo import (
    LODO,
    BlockPermutationPreconditioner,
    apply_block_permutation,
    apply_block_permutation_transpose,
    block_permutation_pair_gradient,
    dense_block_permutation_operator,
    padded_size,
)

F64 = torch.float64


def make(n, k=4, depth=5, seed=0):
    return BlockPermutationPreconditioner(n, k, depth, torch.Generator().manual_seed(seed), F64)


def perturb(p, scale=0.3, seed=1):
    """Move the blocks away from orthogonal, as meta-learning does."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        p.blocks.add_(scale * torch.randn(p.blocks.shape, generator=g, dtype=F64))


@pytest.mark.parametrize("n,k,m", [(100, 4, 204), (5, 4, 12), (7, 3, 15), (3, 1, 7), (94696, 4, 189396)])
def test_padded_size_is_a_multiple_of_k_above_2n(n, k, m):
    assert padded_size(n, k) == m
    assert m % k == 0 and m > 2 * n


@pytest.mark.parametrize("n,k,depth", [(1, 4, 3), (10, 4, 16), (13, 3, 4), (9, 1, 2), (30, 8, 6)])
def test_initial_preconditioner_is_alpha0_identity(n, k, depth):
    model = torch.nn.Linear(n, 1, bias=False).double()
    opt = LODO(model.parameters(), lr=0.27, block_size=k, depth=depth, seed=3)
    g = opt.preconditioner_matrix()
    torch.testing.assert_close(g, 0.27 * torch.eye(n, dtype=F64), rtol=0, atol=1e-13)


def test_initial_blocks_are_orthogonal():
    p = make(40, k=4, depth=3)
    b = p.blocks.permute(0, 3, 1, 2)  # (depth, M, k, k): one k x k matrix per block
    eye = torch.eye(4, dtype=F64).expand_as(b)
    torch.testing.assert_close(b.transpose(-1, -2) @ b, eye, rtol=0, atol=1e-13)
    assert not torch.allclose(b, eye)  # random, not the identity


def test_permutations_are_seeded_and_inverses_invert():
    p, same, other = make(50, seed=4), make(50, seed=4), make(50, seed=5)
    assert torch.equal(p.perms, same.perms) and torch.equal(p.blocks, same.blocks)
    assert not torch.equal(p.perms, other.perms)
    m = p.m
    for perm, inverse in zip(p.perms.long(), p.inverses.long()):
        assert torch.equal(torch.sort(perm).values, torch.arange(m))
        assert torch.equal(perm[inverse], torch.arange(m))


@pytest.mark.parametrize("n,k,depth", [(6, 4, 3), (11, 3, 5), (20, 4, 16)])
def test_fast_products_equal_the_dense_factors(n, k, depth):
    p = make(n, k, depth)
    perturb(p)
    a = dense_block_permutation_operator(p.blocks, p.perms, n)  # A E, (m, n)
    x = torch.randn(3, n, dtype=F64)
    padded = torch.zeros(3, p.m, dtype=F64)
    padded[:, :n] = x
    torch.testing.assert_close(apply_block_permutation(p.blocks, p.perms, padded), x @ a.T, rtol=1e-12, atol=1e-12)
    y = torch.randn(2, p.m, dtype=F64)
    full_a = dense_block_permutation_operator(p.blocks, p.perms, p.m)
    torch.testing.assert_close(apply_block_permutation_transpose(p.blocks, p.inverses, y), y @ full_a,
                               rtol=1e-12, atol=1e-12)
    q = a.T @ a
    torch.testing.assert_close(p.apply(x[0]), q @ x[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(p.dense(), q, rtol=1e-12, atol=1e-12)


def test_preconditioner_is_symmetric_psd_away_from_init():
    p = make(25, k=4, depth=6)
    perturb(p, scale=1.0)
    q = p.dense()
    scale = q.abs().max()
    torch.testing.assert_close(q, q.T, rtol=0, atol=1e-13 * scale)
    assert torch.linalg.eigvalsh(q).min() > -1e-12 * scale
    assert not torch.allclose(q, torch.eye(25, dtype=F64), atol=0.1)


def test_pair_gradient_matches_autograd():
    p = make(12, k=4, depth=4)
    perturb(p)
    pair = torch.zeros(2, p.m, dtype=F64)
    pair[:, :12] = torch.randn(2, 12, dtype=F64)
    blocks = p.blocks.clone().requires_grad_()
    out = apply_block_permutation(blocks, p.perms, pair)
    (expected,) = torch.autograd.grad((out[0] * out[1]).sum(), blocks)
    got = block_permutation_pair_gradient(p.blocks, p.perms, p.inverses, pair)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    # and the class method, the gradient of g^T Q m
    g, m = pair[0, :12], pair[1, :12]
    blocks = p.blocks.clone().requires_grad_()
    qm = apply_block_permutation_transpose(blocks, p.inverses, apply_block_permutation(blocks, p.perms, pair[1:]))
    (expected,) = torch.autograd.grad(g @ qm[0, :12], blocks)
    torch.testing.assert_close(p.bilinear_gradient(g, m)[0], expected, rtol=1e-12, atol=1e-12)


def test_apply_accepts_stacks_and_rejects_wrong_sizes():
    p = make(8)
    v = torch.randn(3, 8, dtype=F64)
    torch.testing.assert_close(p.apply(v)[1], p.apply(v[1]))
    with pytest.raises(ValueError, match="8 entries"):
        p.apply(torch.randn(9, dtype=F64))
