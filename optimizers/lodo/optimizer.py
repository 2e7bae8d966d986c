"""LODO: learning to optimize during optimization, a quasi-Newton method with a meta-learned preconditioner
(Liao et al., "Learning to Optimize Quasi-Newton Methods", Section 3 and Algorithm 1; docs/methods/lodo.md).
Written from the maths, for plain PyTorch and the hoopt loop."""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..protocol import TrainingHooks, Visual
from ..validation import (
    require_betas,
    require_bool,
    require_choice,
    require_int,
    require_non_negative,
    require_positive,
    require_probability,
)
from .ablations import DiagonalPreconditioner, GlobalPreconditioner, ResidualPermutationPreconditioner
from .base import Preconditioner
from .diagnostics import hessian_approximation_error, random_unit_probes
from .memory import DEFAULT_DEPTH, PRECONDITIONER_CLASSES, check_lodo_fits
from .preconditioner import BlockPermutationPreconditioner

META_OPTIMIZERS = ("adam", "sgd")
# Fixed at construction: they shape (or, for seed and residual_init_std, draw) the preconditioner and choose
# the meta-optimizer's class, so a later change in param_groups could not take effect and is refused.
STRUCTURAL = ("preconditioner", "block_size", "depth", "meta_optimizer", "residual_init_std", "seed")
# Those a checkpoint must share with the optimizer it is loaded into; the seed and the residual weights' scale
# only drew the initial preconditioner, which the checkpoint replaces, so they are taken from it instead.
MUST_MATCH_ON_LOAD = ("preconditioner", "block_size", "depth", "meta_optimizer")


def make_preconditioner(kind: str, n: int, block_size: int, depth: int, residual_init_std: float,
                        generator: torch.Generator, dtype: torch.dtype, device: torch.device) -> Preconditioner:
    """One of LODO's preconditioners Q(theta) for an n-parameter model (equation 2 and the ablations of
    Section 5.3)."""
    if kind == "blocks":
        return BlockPermutationPreconditioner(n, block_size, depth, generator, dtype, device)
    if kind == "residuals":
        return ResidualPermutationPreconditioner(n, depth, residual_init_std, generator, dtype, device)
    if kind == "diagonal":
        return DiagonalPreconditioner(n, dtype, device)
    if kind == "global":
        return GlobalPreconditioner(n, dtype, device)
    require_choice("preconditioner", kind, tuple(PRECONDITIONER_CLASSES))
    raise AssertionError(kind)  # every class of PRECONDITIONER_CLASSES is built above


def _validate(group: dict) -> None:
    """Checks every hyperparameter of the (single) group, normalising numbers in place."""
    group["lr"] = require_positive("lr", group["lr"])
    group["meta_lr"] = require_non_negative("meta_lr", group["meta_lr"])
    group["beta"] = require_probability("beta", group["beta"])
    require_choice("preconditioner", group["preconditioner"], tuple(PRECONDITIONER_CLASSES))
    group["block_size"] = require_int("block_size", group["block_size"], 1)
    if group["depth"] is None:  # each preconditioner's own default (16 blocks, 64 residual layers)
        group["depth"] = DEFAULT_DEPTH[group["preconditioner"]]
    elif group["preconditioner"] in ("blocks", "residuals"):
        group["depth"] = require_int("depth", group["depth"], 1)
    else:
        group["depth"] = require_int("depth", group["depth"], 0)  # unused by the diagonal and global ablations
    require_choice("meta_optimizer", group["meta_optimizer"], META_OPTIMIZERS)
    group["meta_betas"] = require_betas("meta_betas", group["meta_betas"])
    group["meta_eps"] = require_positive("meta_eps", group["meta_eps"])
    group["residual_init_std"] = require_non_negative("residual_init_std", group["residual_init_std"])
    group["seed"] = require_int("seed", group["seed"])
    group["hessian_error_every"] = require_int("hessian_error_every", group["hessian_error_every"], 0)
    group["hessian_error_probes"] = require_int("hessian_error_probes", group["hessian_error_probes"], 1)


class LODO(torch.optim.Optimizer, TrainingHooks):
    """LODO: x <- x - G(theta) m with G = alpha_0 E^T A^T A E learned online by hypergradients (equations 1-2).

    Every step: the gradient g at the current point (from ``closure`` or the ``.grad`` already there) is
    also the gradient at the point the previous step reached, so it first updates theta with
    -alpha_0 * d/dtheta <A g, A m_prev> (the loss at the new point differentiated through the step; no graph
    through the model is kept), then m <- beta m + (1 - beta) g and x <- x - alpha_0 Q(theta) m.
    The first step has no previous step to learn from and is momentum SGD with the initial G = alpha_0 I.

    Every hyperparameter lives in ``param_groups[0]`` and is read there when it is used (``lr``, ``meta_lr``,
    ``beta``, ``meta_betas``, ``meta_eps``, ``hessian_error_*``), except those of ``STRUCTURAL``, which build
    the preconditioner and the meta-optimizer once; changing one of them later is refused with a ValueError.

    Args:
        params: the model's parameters or ``model.named_parameters()``, one group (LODO treats them as one flat
            vector of n entries; tensors that do not require gradients are left out).
        lr: alpha_0, the initial learning rate, G(theta_0) = alpha_0 I. A scheduler may change it.
        meta_lr: learning rate of the meta-optimizer that learns theta.
        beta: decay of the gradient EMA m (0: the No-Momentum ablation).
        block_size: k, the size of the orthogonal blocks (``blocks`` only).
        depth: N, number of permutation layers; default (None) 16 for ``blocks``, 64 for ``residuals``.
        preconditioner: ``blocks`` (LODO), or the ablations of Section 5.3: ``diagonal``
            (G = alpha_0 diag(theta)), ``global`` (G = alpha_0 theta I), ``residuals``
            (G = alpha_0 A^T diag(d) A, A = prod (I + diag(w) P)).
        meta_optimizer: ``adam`` (LODO) or ``sgd`` (the LODO-SGD ablation, plain SGD at ``meta_lr``).
        meta_betas, meta_eps: Adam's (beta1, beta2) and epsilon for the meta-optimizer.
        residual_init_std: standard deviation of the residual ablation's initial weights w_j.
        seed: draws the permutations and the initial blocks (a run's seed gives its own permutations).
        hessian_error_every: compute the Hessian-approximation error every so many steps (0 = never); it
            materialises G densely, so it is for small problems such as the quadratic bowl.
        hessian_error_probes: number of random unit vectors in the error estimate (Section 5.1: 100).
        check_memory: estimate LODO's memory first and raise LodoMemoryError if the device lacks it (a
            construction-time safeguard, not a hyperparameter of the method).
        hessian: the objective's exact (n, n) Hessian for that error (the runner passes the quadratic bowl's),
            or None.

    Example (plain PyTorch)::

        import torch
        from hoopt.optimizers.lodo import LODO

        model = torch.nn.Sequential(torch.nn.Linear(784, 100), torch.nn.Tanh(), torch.nn.Linear(100, 10))
        optimizer = LODO(model.named_parameters(), lr=0.08459, meta_lr=7.946e-6, beta=0.9343)
        for inputs, targets in loader:
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(inputs), targets)
            loss.backward()
            optimizer.step()  # or optimizer.step(closure) with a closure that does the three lines above
    """

    def __init__(self, params, lr: float = 0.08459, meta_lr: float = 7.946e-6, beta: float = 0.9343,
                 block_size: int = 4, depth: int | None = None, preconditioner: str = "blocks",
                 meta_optimizer: str = "adam", meta_betas=(0.9, 0.999), meta_eps: float = 1e-7,
                 residual_init_std: float = 0.125, seed: int = 0, hessian_error_every: int = 0,
                 hessian_error_probes: int = 100, check_memory: bool = True, *,
                 hessian: torch.Tensor | None = None):
        defaults = dict(lr=lr, meta_lr=meta_lr, beta=beta, block_size=block_size, depth=depth,
                        preconditioner=preconditioner, meta_optimizer=meta_optimizer, meta_betas=meta_betas,
                        meta_eps=meta_eps, residual_init_std=residual_init_std, seed=seed,
                        hessian_error_every=hessian_error_every, hessian_error_probes=hessian_error_probes)
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("LODO treats all parameters as one vector and takes a single parameter group; "
                             "pass model.named_parameters()")
        group = self.param_groups[0]
        _validate(group)
        require_bool("check_memory", check_memory)
        self._params = [p for p in group["params"] if p.requires_grad]
        if not self._params:
            raise ValueError("LODO got no parameters that require gradients")
        first = self._params[0]
        if not first.is_floating_point():
            raise ValueError(f"LODO needs floating-point parameters, got {first.dtype}")
        if not all(p.device == first.device and p.dtype == first.dtype for p in self._params):
            raise ValueError("LODO needs all parameters on one device with one dtype")
        self.num_params = sum(p.numel() for p in self._params)
        kind = group["preconditioner"]
        if check_memory:
            check_lodo_fits(self.num_params, first.device, preconditioner=kind, block_size=group["block_size"],
                            depth=group["depth"], meta_optimizer=group["meta_optimizer"], dtype=first.dtype)
        generator = torch.Generator().manual_seed(group["seed"])
        self.preconditioner = make_preconditioner(kind, self.num_params, group["block_size"], group["depth"],
                                                  group["residual_init_std"], generator, first.dtype, first.device)
        theta = self.preconditioner.parameters()
        if group["meta_optimizer"] == "adam":
            # the fused kernel makes one pass over theta's N*k*m entries instead of several (6x faster on CPU)
            fused = first.device.type in ("cpu", "cuda")
            self.meta_optimizer = torch.optim.Adam(theta, lr=group["meta_lr"], betas=group["meta_betas"],
                                                   eps=group["meta_eps"], fused=fused)
        else:
            self.meta_optimizer = torch.optim.SGD(theta, lr=group["meta_lr"])
        self._structure = {key: group[key] for key in STRUCTURAL}
        self._momentum = torch.zeros(self.num_params, dtype=first.dtype, device=first.device)
        self._has_previous_step, self._previous_lr, self._steps = False, group["lr"], 0
        self._last_step: torch.Tensor | None = None
        # Hessian-approximation error on the quadratic bowl (Section 5.1)
        self._hessian: torch.Tensor | None = None
        self._probes: torch.Tensor | None = None
        self._unreported_hessian_error: float | None = None
        if hessian is not None:
            self.set_hessian(hessian)

    @property
    def kind(self) -> str:
        """The preconditioner's kind: blocks, residuals, diagonal or global."""
        return self._structure["preconditioner"]

    def _group(self) -> dict:
        group = self.param_groups[0]
        for key, value in self._structure.items():
            if group[key] != value:
                raise ValueError(f"LODO's {key} is fixed at construction ({value!r}): it builds the preconditioner "
                                 f"or the meta-optimizer; param_groups now says {group[key]!r}")
        return group

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

    def _meta_step(self, group: dict, gradient: torch.Tensor) -> None:
        """theta <- meta-optimizer step on -alpha_0 d/dtheta <A g_new, A m_prev> (Section 3)."""
        # the form is linear in g: scaling g (n entries) is cheaper than scaling the N*k*m-entry result
        grads = self.preconditioner.bilinear_gradient(gradient * -self._previous_lr, self._momentum)
        for theta, grad in zip(self.preconditioner.parameters(), grads):
            theta.grad = grad
        for meta_group in self.meta_optimizer.param_groups:
            meta_group["lr"] = group["meta_lr"]
            if "betas" in meta_group:  # Adam: its moments follow the group too
                meta_group["betas"], meta_group["eps"] = group["meta_betas"], group["meta_eps"]
        self.meta_optimizer.step()

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        group = self._group()
        gradient = self._flat_gradient()
        if self._has_previous_step:
            self._meta_step(group, gradient)
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
        every = group["hessian_error_every"]
        if every and self._hessian is not None and self._steps % every == 0:
            self._unreported_hessian_error = self.hessian_error()
        return loss

    # -- the Hessian-approximation error (Section 5.1) ----------------------------------------------------
    def set_hessian(self, hessian: torch.Tensor) -> None:
        """The true Hessian (n, n) for ``hessian_error``; kept in float64 on the parameters' device."""
        hessian = torch.as_tensor(hessian)
        n = self.num_params
        if hessian.shape != (n, n):
            raise ValueError(f"hessian must be ({n}, {n}) for this model, got {tuple(hessian.shape)}")
        self._hessian = hessian.detach().to(device=self._momentum.device, dtype=torch.float64)

    def preconditioner_matrix(self) -> torch.Tensor:
        """G = alpha_0 Q(theta) as a dense (n, n) matrix; O(n^2) memory, for small models only."""
        with torch.no_grad():
            return self.param_groups[0]["lr"] * self.preconditioner.dense()

    def hessian_error(self) -> float:
        """sqrt(mean ||(I - G H) v||^2) over fixed random unit v (Section 5.1); needs the Hessian."""
        if self._hessian is None:
            raise ValueError("hessian_error needs the true Hessian: pass hessian=H to LODO or call set_hessian(H)")
        group = self.param_groups[0]
        count = group["hessian_error_probes"]
        if self._probes is None or self._probes.shape[0] != count:
            # fixed probes, so successive values differ only through G
            self._probes = random_unit_probes(self.num_params, count,
                                              torch.Generator().manual_seed(group["seed"] + 1))
        return hessian_approximation_error(self.preconditioner_matrix(), self._hessian, self._probes)

    # -- the loop's hooks (protocol.TrainingHooks) -------------------------------------------------------
    def diagnostics(self) -> dict[str, float]:
        """``lodo/step_norm``, ``lodo/meta_grad_norm`` and, when fresh, ``lodo/hessian_error``."""
        out: dict[str, float] = {}
        if self._last_step is not None:
            out["lodo/step_norm"] = float(self._last_step.norm())
        grads = [p.grad for p in self.preconditioner.parameters() if p.grad is not None]
        if grads:
            out["lodo/meta_grad_norm"] = float(torch.sqrt(sum(g.pow(2).sum() for g in grads)))
        if self._unreported_hessian_error is not None:
            out["lodo/hessian_error"] = self._unreported_hessian_error
            self._unreported_hessian_error = None
        return out

    def visuals(self) -> dict[str, Visual]:
        return {}  # G is (n, n): too large to draw for any model but the smallest

    def on_epoch_end(self, train_loss: float) -> None:
        pass  # LODO adapts every step; it has no per-epoch schedule

    # -- exact resume -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["lodo"] = {
            "num_params": self.num_params,
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
        saved = dict(state_dict["param_groups"][0])
        saved.setdefault("depth", None)
        if saved["depth"] is None and saved.get("preconditioner") in DEFAULT_DEPTH:
            saved["depth"] = DEFAULT_DEPTH[saved["preconditioner"]]
        mine = {"num_params": self.num_params, **{key: self._structure[key] for key in MUST_MATCH_ON_LOAD}}
        theirs = {"num_params": lodo["num_params"], **{key: saved.get(key) for key in MUST_MATCH_ON_LOAD}}
        for key, value in mine.items():
            if theirs[key] != value:
                raise ValueError(f"the saved LODO state has {key}={theirs[key]} but this optimizer has {value}; "
                                 f"resume with the checkpoint's model and LODO settings")
        super().load_state_dict(state_dict)
        group = self.param_groups[0]
        _validate(group)
        self._structure = {key: group[key] for key in STRUCTURAL}
        self._probes = None  # drawn again from the checkpoint's seed
        self.preconditioner.load_state_dict(lodo["preconditioner"])
        self.meta_optimizer.load_state_dict(lodo["meta_optimizer"])
        self._momentum.copy_(lodo["momentum"])
        self._has_previous_step = bool(lodo["has_previous_step"])
        self._previous_lr = float(lodo["previous_lr"])
        self._steps = int(lodo["steps"])
