"""LODO: learning to optimize during optimization, a quasi-Newton method with a meta-learned
preconditioner (Liao et al.; SPEC 2). Written from the maths, for plain PyTorch and the hoopt loop."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch

from .ablations import DiagonalPreconditioner, GlobalPreconditioner, ResidualPermutationPreconditioner
from .base import Preconditioner
from .diagnostics import hessian_approximation_error, random_unit_probes
from .memory import DEFAULT_DEPTH, PRECONDITIONER_CLASSES, check_lodo_fits
from .preconditioner import BlockPermutationPreconditioner

META_OPTIMIZERS = ("adam", "sgd")


def make_preconditioner(kind: str, n: int, block_size: int, depth: int, residual_init_std: float,
                        generator: torch.Generator, dtype: torch.dtype, device: torch.device) -> Preconditioner:
    """One of LODO's preconditioners Q(theta) for an n-parameter model (SPEC 2 and its ablations)."""
    if kind == "blocks":
        return BlockPermutationPreconditioner(n, block_size, depth, generator, dtype, device)
    if kind == "residuals":
        return ResidualPermutationPreconditioner(n, depth, residual_init_std, generator, dtype, device)
    if kind == "diagonal":
        return DiagonalPreconditioner(n, dtype, device)
    if kind == "global":
        return GlobalPreconditioner(n, dtype, device)
    raise ValueError(f"preconditioner must be one of {sorted(PRECONDITIONER_CLASSES)}, got '{kind}'")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


class LODO(torch.optim.Optimizer):
    """LODO (SPEC 2): x <- x - G(theta) m with G = alpha_0 E^T A^T A E learned online by hypergradients.

    Every step: the gradient g at the current point (from ``closure`` or the ``.grad`` already there) is
    also the gradient at the point the previous step reached, so it first updates theta with
    -alpha_0 * d/dtheta <A g, A m_prev> (the loss at the new point differentiated through the step; no graph
    through the model is kept), then m <- beta m + (1 - beta) g and x <- x - alpha_0 Q(theta) m.
    The first step has no previous step to learn from and is momentum SGD with the initial G = alpha_0 I.

    Args:
        params: the model's parameters, one group (LODO treats them as one flat vector of n entries).
        lr: alpha_0, the initial learning rate, G(theta_0) = alpha_0 I. A scheduler may change it.
        meta_lr: learning rate of the meta-optimizer that learns theta.
        beta: decay of the gradient EMA m (0: the No-Momentum ablation).
        block_size: k, the size of the orthogonal blocks (``blocks`` only).
        depth: N, number of permutation layers; default 16 (``blocks``) or 64 (``residuals``).
        preconditioner: ``blocks`` (LODO), or the ablations ``diagonal`` (G = alpha_0 diag(theta)),
            ``global`` (G = alpha_0 theta I), ``residuals`` (G = alpha_0 A^T diag(d) A, A = prod (I + diag(w) P)).
        meta_optimizer: ``adam`` (LODO) or ``sgd`` (the LODO-SGD ablation, plain SGD at ``meta_lr``).
        meta_betas, meta_eps: Adam's (beta1, beta2) and epsilon for the meta-optimizer.
        residual_init_std: standard deviation of the residual ablation's initial weights w_j.
        seed: draws the permutations and the initial blocks (a run's seed gives its own permutations).
        hessian: optional (n, n) Hessian (the quadratic bowl's) for the Hessian-approximation error;
            ``bind`` takes it from ``context.extras["hessian"]``.
        hessian_error_every: compute that error every so many steps (0 = never); it materialises G densely.
        hessian_error_probes: number of random unit vectors in the error estimate (SPEC 2.1: 100).
        check_memory: estimate LODO's memory first and raise LodoMemoryError if the device lacks it.

    Example (plain PyTorch)::

        import torch
        from hoopt.optimizers.lodo import LODO

        model = torch.nn.Sequential(torch.nn.Linear(784, 100), torch.nn.Tanh(), torch.nn.Linear(100, 10))
        optimizer = LODO(model.parameters(), lr=0.08459, meta_lr=7.946e-6, beta=0.9343)
        for inputs, targets in loader:
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(inputs), targets)
            loss.backward()
            optimizer.step()  # or optimizer.step(closure) with a closure that does the three lines above
    """

    def __init__(self, params, lr: float = 0.08459, meta_lr: float = 7.946e-6, beta: float = 0.9343,
                 block_size: int = 4, depth: int | None = None, preconditioner: str = "blocks",
                 meta_optimizer: str = "adam", meta_betas: Sequence[float] = (0.9, 0.999), meta_eps: float = 1e-7,
                 residual_init_std: float = 0.125, seed: int = 0, hessian: torch.Tensor | None = None,
                 hessian_error_every: int = 0, hessian_error_probes: int = 100, check_memory: bool = True):
        _check(isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0, f"lr must be positive, got {lr}")
        _check(isinstance(meta_lr, (int, float)) and math.isfinite(meta_lr) and meta_lr >= 0,
               f"meta_lr must be non-negative, got {meta_lr}")
        _check(isinstance(beta, (int, float)) and 0 <= beta < 1, f"beta must be in [0, 1), got {beta}")
        _check(isinstance(block_size, int) and block_size >= 1,
               f"block_size must be a positive integer, got {block_size}")
        _check(depth is None or (isinstance(depth, int) and depth >= 1),
               f"depth must be a positive integer, got {depth}")
        _check(preconditioner in PRECONDITIONER_CLASSES,
               f"preconditioner must be one of {sorted(PRECONDITIONER_CLASSES)}, got '{preconditioner}'")
        _check(meta_optimizer in META_OPTIMIZERS,
               f"meta_optimizer must be one of {META_OPTIMIZERS}, got '{meta_optimizer}'")
        meta_betas = tuple(meta_betas)
        _check(len(meta_betas) == 2 and all(0 <= b < 1 for b in meta_betas),
               f"meta_betas must be two numbers in [0, 1), got {meta_betas}")
        _check(meta_eps > 0, f"meta_eps must be positive, got {meta_eps}")
        _check(residual_init_std >= 0, f"residual_init_std must be non-negative, got {residual_init_std}")
        _check(isinstance(hessian_error_every, int) and hessian_error_every >= 0,
               f"hessian_error_every must be a non-negative integer, got {hessian_error_every}")
        _check(isinstance(hessian_error_probes, int) and hessian_error_probes >= 1,
               f"hessian_error_probes must be a positive integer, got {hessian_error_probes}")
        super().__init__(params, dict(lr=lr, beta=beta, meta_lr=meta_lr))
        _check(len(self.param_groups) == 1, "LODO treats all parameters as one vector and takes a single "
               "parameter group; pass model.parameters()")
        self._params = [p for p in self.param_groups[0]["params"] if p.requires_grad]
        _check(len(self._params) > 0, "LODO got no parameters that require gradients")
        first = self._params[0]
        _check(first.is_floating_point(), f"LODO needs floating-point parameters, got {first.dtype}")
        _check(all(p.device == first.device and p.dtype == first.dtype for p in self._params),
               "LODO needs all parameters on one device with one dtype")
        self.num_params = sum(p.numel() for p in self._params)
        self.kind, self.block_size = preconditioner, block_size
        self.depth = DEFAULT_DEPTH[preconditioner] if depth is None else depth
        self.meta_optimizer_name, self.seed = meta_optimizer, seed
        if check_memory:
            check_lodo_fits(self.num_params, first.device, preconditioner=preconditioner, block_size=block_size,
                            depth=self.depth, meta_optimizer=meta_optimizer, dtype=first.dtype)
        generator = torch.Generator().manual_seed(seed)
        self.preconditioner = make_preconditioner(preconditioner, self.num_params, block_size, self.depth,
                                                  residual_init_std, generator, first.dtype, first.device)
        theta = self.preconditioner.parameters()
        if meta_optimizer == "adam":
            # the fused kernel makes one pass over theta's N*k*m entries instead of several (6x faster on CPU)
            fused = first.device.type in ("cpu", "cuda")
            self.meta_optimizer = torch.optim.Adam(theta, lr=meta_lr, betas=meta_betas, eps=meta_eps, fused=fused)
        else:
            self.meta_optimizer = torch.optim.SGD(theta, lr=meta_lr)
        self._momentum = torch.zeros(self.num_params, dtype=first.dtype, device=first.device)
        self._has_previous_step, self._previous_lr, self._steps = False, float(lr), 0
        self._last_step: torch.Tensor | None = None
        # Hessian-approximation error on the quadratic bowl (SPEC 2.1)
        self.hessian_error_every, self.hessian_error_probes = hessian_error_every, hessian_error_probes
        self._hessian: torch.Tensor | None = None
        self._probes: torch.Tensor | None = None
        self._pending_hessian_error: float | None = None
        if hessian is not None:
            self.set_hessian(hessian)

    # -- the step -------------------------------------------------------------------------------------
    def _flat_gradient(self) -> torch.Tensor:
        pieces = []
        for p in self._params:
            if p.grad is None:
                pieces.append(torch.zeros(p.numel(), dtype=p.dtype, device=p.device))
            elif p.grad.is_sparse:
                raise ValueError("LODO does not support sparse gradients")
            else:
                pieces.append(p.grad.reshape(-1))
        return torch.cat(pieces)

    def _meta_step(self, gradient: torch.Tensor) -> None:
        """theta <- meta-optimizer step on -alpha_0 d/dtheta <A g_new, A m_prev> (SPEC 2)."""
        # the form is linear in g: scaling g (n entries) is cheaper than scaling the N*k*m-entry result
        grads = self.preconditioner.bilinear_gradient(gradient * -self._previous_lr, self._momentum)
        for theta, grad in zip(self.preconditioner.parameters(), grads):
            theta.grad = grad
        for group in self.meta_optimizer.param_groups:
            group["lr"] = self.param_groups[0]["meta_lr"]
        self.meta_optimizer.step()

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        group = self.param_groups[0]
        gradient = self._flat_gradient()
        if self._has_previous_step:
            self._meta_step(gradient)
        self._momentum.mul_(group["beta"]).add_(gradient, alpha=1 - group["beta"])
        lr = group["lr"]
        direction = self.preconditioner.apply(self._momentum)
        offset = 0
        for p in self._params:
            p.add_(direction[offset:offset + p.numel()].view_as(p), alpha=-lr)
            offset += p.numel()
        self._last_step = direction.mul_(lr)
        self._has_previous_step, self._previous_lr = True, float(lr)
        self._steps += 1
        if self.hessian_error_every and self._hessian is not None and self._steps % self.hessian_error_every == 0:
            self._pending_hessian_error = self.hessian_error()
        return loss

    # -- diagnostics (the loop's optional hooks) ---------------------------------------------------------
    def bind(self, context) -> None:
        """Take the quadratic bowl's Hessian from the training context, when the loop provides it."""
        hessian = context.extras.get("hessian") if getattr(context, "extras", None) else None
        if hessian is not None:
            self.set_hessian(hessian)

    def set_hessian(self, hessian: torch.Tensor) -> None:
        """The true Hessian (n, n) for ``hessian_error``; kept in float64 on the parameters' device."""
        hessian = torch.as_tensor(hessian)
        n = self.num_params
        _check(hessian.shape == (n, n), f"hessian must be ({n}, {n}) for this model, got {tuple(hessian.shape)}")
        self._hessian = hessian.detach().to(device=self._momentum.device, dtype=torch.float64)

    def preconditioner_matrix(self) -> torch.Tensor:
        """G = alpha_0 Q(theta) as a dense (n, n) matrix; O(n^2) memory, for small models only."""
        with torch.no_grad():
            return self.param_groups[0]["lr"] * self.preconditioner.dense()

    def hessian_error(self) -> float:
        """sqrt(mean ||(I - G H) v||^2) over fixed random unit v (SPEC 2.1); needs ``set_hessian`` first."""
        if self._hessian is None:
            raise ValueError("hessian_error needs the true Hessian: call set_hessian(H) or bind a context "
                             "whose extras hold 'hessian'")
        if self._probes is None:  # fixed probes, so successive values differ only through G
            self._probes = random_unit_probes(self.num_params, self.hessian_error_probes,
                                              torch.Generator().manual_seed(self.seed + 1))
        return hessian_approximation_error(self.preconditioner_matrix(), self._hessian, self._probes)

    def diagnostics(self) -> dict[str, float]:
        """``lodo/step_norm``, ``lodo/meta_grad_norm`` and, when fresh, ``lodo/hessian_error``."""
        out: dict[str, float] = {}
        if self._last_step is not None:
            out["lodo/step_norm"] = float(self._last_step.norm())
        grads = [p.grad for p in self.preconditioner.parameters() if p.grad is not None]
        if grads:
            out["lodo/meta_grad_norm"] = float(torch.sqrt(sum(g.pow(2).sum() for g in grads)))
        if self._pending_hessian_error is not None:
            out["lodo/hessian_error"] = self._pending_hessian_error
            self._pending_hessian_error = None
        return out

    # -- exact resume -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["lodo"] = {
            "preconditioner_kind": self.kind,
            "num_params": self.num_params,
            "block_size": self.block_size,
            "depth": self.depth,
            "preconditioner": self.preconditioner.state_dict(),
            "meta_optimizer": self.meta_optimizer.state_dict(),
            "momentum": self._momentum,
            "has_previous_step": self._has_previous_step,
            "previous_lr": self._previous_lr,
            "steps": self._steps,
        }
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        lodo = state_dict.pop("lodo", None)
        if lodo is None:
            raise ValueError("this state dict was not saved by LODO (no 'lodo' entry)")
        for key, mine in (("preconditioner_kind", self.kind), ("num_params", self.num_params),
                          ("block_size", self.block_size), ("depth", self.depth)):
            if lodo[key] != mine:
                raise ValueError(f"the saved LODO state has {key}={lodo[key]} but this optimizer has {mine}; "
                                 f"resume with the checkpoint's model and LODO settings")
        super().load_state_dict(state_dict)
        self.preconditioner.load_state_dict(lodo["preconditioner"])
        self.meta_optimizer.load_state_dict(lodo["meta_optimizer"])
        self._momentum.copy_(lodo["momentum"])
        self._has_previous_step = bool(lodo["has_previous_step"])
        self._previous_lr = float(lodo["previous_lr"])
        self._steps = int(lodo["steps"])
