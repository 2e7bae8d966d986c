"""The interface every LODO preconditioner follows (arXiv:2210.06171, Section 3; docs/methods/lodo.md).

LODO's step is x <- x - alpha_0 Q(theta) m with a learned symmetric operator Q; alpha_0 lives in the
optimizer (it is the group's ``lr``), so a preconditioner only knows Q. The meta-gradient of the loss at the
new point through the step is -alpha_0 * d/dtheta (g_new^T Q(theta) m_old) (docs/methods/lodo.md, "The step and
the hypergradient"), so each preconditioner supplies that bilinear form's gradient; no graph through the model is
ever kept.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


def as_columns(v: torch.Tensor, n: int) -> tuple[torch.Tensor, bool]:
    """View a vector (n,) or a stack of vectors (c, n) as (c, n); also say whether it was a single vector."""
    if v.dim() == 1:
        v = v.unsqueeze(0)
        single = True
    else:
        single = False
    if v.dim() != 2 or v.shape[1] != n:
        raise ValueError(f"expected a vector of {n} entries or a (c, {n}) stack, got shape {tuple(v.shape)}")
    return v, single


class Preconditioner(ABC):
    """Q(theta) on R^n, symmetric by construction; ``parameters()`` are theta (meta-learned leaf tensors)."""

    kind: str = "?"

    def __init__(self, n: int):
        if n < 1:
            raise ValueError(f"the model must have at least one parameter, got n={n}")
        self.n = n

    @abstractmethod
    def parameters(self) -> list[torch.Tensor]:
        """The learned tensors theta, in a fixed order (the meta-optimizer's parameters)."""

    @abstractmethod
    def apply(self, v: torch.Tensor) -> torch.Tensor:
        """Q v for v of shape (n,) or a stack (c, n)."""

    @abstractmethod
    def bilinear_gradient(self, g: torch.Tensor, m: torch.Tensor) -> list[torch.Tensor]:
        """d/dtheta (g^T Q(theta) m) for two fixed vectors, one tensor per entry of ``parameters()``."""

    def dense(self) -> torch.Tensor:
        """Q as a dense (n, n) matrix; for diagnostics and tests on small n only."""
        theta = self.parameters()[0]
        eye = torch.eye(self.n, dtype=theta.dtype, device=theta.device)
        return self.apply(eye)  # rows are Q e_i, i.e. Q^T = Q

    # -- persistence: theta plus any fixed structure (permutations) needed to resume exactly ----------
    def state_dict(self) -> dict[str, torch.Tensor]:
        """References to the live tensors, as torch's own state_dicts (no copy of N*k*m numbers)."""
        return {f"theta{i}": p.detach() for i, p in enumerate(self.parameters())}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for i, p in enumerate(self.parameters()):
            saved = state[f"theta{i}"]
            if saved.shape != p.shape:
                raise ValueError(f"saved LODO {self.kind} preconditioner tensor {i} has shape "
                                 f"{tuple(saved.shape)}, this one {tuple(p.shape)}: the model or the LODO "
                                 f"settings (block_size, depth) differ from the checkpoint's")
            with torch.no_grad():
                p.copy_(saved)


class PermutedPreconditioner(Preconditioner):
    """A preconditioner with fixed seeded permutations ``perms`` and their ``inverses``: both are saved with
    the learned tensors, so a resumed run applies the very same permutations."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = super().state_dict()
        state["perms"], state["inverses"] = self.perms, self.inverses  # references, as torch's state_dicts
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        super().load_state_dict(state)
        if state["perms"].shape != self.perms.shape:
            raise ValueError("saved LODO permutations do not match this model's size")
        self.perms.copy_(state["perms"])
        self.inverses.copy_(state["inverses"])
