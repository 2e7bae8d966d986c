"""The preconditioners of LODO's ablations (Liao et al., "Learning to Optimize Quasi-Newton Methods",
Section 5.3; docs/methods/lodo.md).

- Diagonal:  Q = diag(theta), theta_0 = 1 (as Amid et al. 2022).
- Global:    Q = theta I, theta_0 = 1 (as Baydin et al. 2017's hypergradient descent).
- Residuals: Q = E^T A^T diag(d) A E with A = prod_j (I + diag(w_j) P_j), m = 2n, w_j ~ N(0, 0.125^2),
             d_0 = 1; d is learned freely, so Q is PSD at the start but not forced to stay so (as the paper).
No-Momentum (beta = 0) and SGD (plain SGD as meta-optimizer) are optimizer options, not preconditioners.
"""

from __future__ import annotations

import torch

from ..validation import require_int, require_non_negative
from .base import PermutedPreconditioner, Preconditioner, as_columns
from .preconditioner import index_dtype, random_permutations


class DiagonalPreconditioner(Preconditioner):
    kind = "diagonal"

    def __init__(self, n: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
        super().__init__(n)
        self.theta = torch.ones(n, dtype=dtype, device=device)

    @staticmethod
    def memory_numel(n: int, block_size: int = 4, depth: int = 16) -> dict[str, int]:
        return {"theta": n, "index_entries": 0, "index_bytes": 0, "workspace": n}

    def parameters(self) -> list[torch.Tensor]:
        return [self.theta]

    def apply(self, v: torch.Tensor) -> torch.Tensor:
        return self.theta * v

    def bilinear_gradient(self, g: torch.Tensor, m: torch.Tensor) -> list[torch.Tensor]:
        return [g * m]  # d/dtheta sum_i g_i theta_i m_i


class GlobalPreconditioner(Preconditioner):
    kind = "global"

    def __init__(self, n: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
        super().__init__(n)
        self.theta = torch.ones(1, dtype=dtype, device=device)

    @staticmethod
    def memory_numel(n: int, block_size: int = 4, depth: int = 16) -> dict[str, int]:
        return {"theta": 1, "index_entries": 0, "index_bytes": 0, "workspace": 0}

    def parameters(self) -> list[torch.Tensor]:
        return [self.theta]

    def apply(self, v: torch.Tensor) -> torch.Tensor:
        return self.theta * v

    def bilinear_gradient(self, g: torch.Tensor, m: torch.Tensor) -> list[torch.Tensor]:
        return [torch.dot(g, m).reshape(1)]  # d/dtheta theta <g, m>


def apply_residual_permutation(weights: torch.Tensor, perms: torch.Tensor, x: torch.Tensor,
                               saved: list[torch.Tensor] | None = None) -> torch.Tensor:
    """A x = prod_j (I + diag(w_j) P_j) x for a stack x of shape (c, m); differentiable."""
    for j in range(weights.shape[0]):
        u = x.index_select(1, perms[j])
        if saved is not None:
            saved.append(u)
        x = x + weights[j] * u
    return x


def apply_residual_permutation_transpose(weights: torch.Tensor, inverses: torch.Tensor,
                                         y: torch.Tensor) -> torch.Tensor:
    """A^T y, each layer transposed as I + P_j^T diag(w_j)."""
    for j in reversed(range(weights.shape[0])):
        y = y + (weights[j] * y).index_select(1, inverses[j])
    return y


class ResidualPermutationPreconditioner(PermutedPreconditioner):
    kind = "residuals"

    def __init__(self, n: int, depth: int = 64, init_std: float = 0.125, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
        super().__init__(n)
        require_int("depth", depth, 1)
        require_non_negative("residual_init_std", init_std)
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.depth, self.m = depth, 2 * n
        perms, inverses = random_permutations(depth, self.m, generator)
        self.perms, self.inverses = perms.to(device), inverses.to(device)
        weights = init_std * torch.randn(depth, self.m, generator=generator, dtype=torch.float64)
        self.weights = weights.to(dtype=dtype, device=device)
        self.diagonal = torch.ones(self.m, dtype=dtype, device=device)

    @staticmethod
    def memory_numel(n: int, block_size: int = 4, depth: int = 64) -> dict[str, int]:
        m = 2 * n
        return {"theta": depth * m + m, "index_entries": 2 * depth * m,
                "index_bytes": torch.empty((), dtype=index_dtype(m)).element_size(),
                "workspace": 2 * depth * m + 2 * m}

    def parameters(self) -> list[torch.Tensor]:
        return [self.weights, self.diagonal]

    def _pad(self, v: torch.Tensor) -> torch.Tensor:
        x = v.new_zeros(v.shape[0], self.m)
        x[:, :self.n] = v
        return x

    def apply(self, v: torch.Tensor) -> torch.Tensor:
        cols, single = as_columns(v, self.n)
        y = apply_residual_permutation(self.weights, self.perms, self._pad(cols)) * self.diagonal
        out = apply_residual_permutation_transpose(self.weights, self.inverses, y)[:, :self.n]
        return out[0] if single else out

    def bilinear_gradient(self, g: torch.Tensor, m: torch.Tensor) -> list[torch.Tensor]:
        """d/d(w, d) of <A g, diag(d) A m>, reverse mode written out (cf. preconditioner.py).

        Layer j: x_j = x_{j-1} + w_j * u_j with u_j = P_j x_{j-1}; so dw_j = sum_c ybar_j * u_j and
        ybar_{j-1} = ybar_j + P_j^T (w_j * ybar_j).
        """
        saved: list[torch.Tensor] = []
        top = apply_residual_permutation(self.weights, self.perms, self._pad(torch.stack((g, m))), saved)
        grad_diagonal = top[0] * top[1]
        ybar = top.flip(0) * self.diagonal
        grad_weights = torch.empty_like(self.weights)
        for j in reversed(range(self.depth)):
            grad_weights[j] = (ybar * saved[j]).sum(0)
            if j > 0:
                ybar = ybar + (self.weights[j] * ybar).index_select(1, self.inverses[j])
        return [grad_weights, grad_diagonal]


def dense_residual_permutation_operator(weights: torch.Tensor, perms: torch.Tensor, n: int) -> torch.Tensor:
    """A E for the residual ablation as an explicit dense (m, n) matrix (tests; small n only)."""
    m = weights.shape[1]
    eye = torch.eye(m, dtype=weights.dtype, device=weights.device)
    a = eye.clone()
    for j in range(weights.shape[0]):
        p = torch.zeros_like(eye)
        p[torch.arange(m), perms[j].long()] = 1.0
        a = (eye + torch.diag(weights[j]) @ p) @ a
    return a[:, :n]
