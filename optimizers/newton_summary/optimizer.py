"""NewtonSummary: per-subset learning rates from Hessian summaries (SPEC 1.3, "NewtonSummaryUniformAvg").

Every step:  theta_p <- theta_p - lambda_1 * eta_{group(p)} * u_p,  u = heavy-ball momentum of the gradients.
Every ``period`` steps, gbar, Hbar and D3 are computed along u on a separate minibatch (summaries.py); eta
solves the cubic model (cubic_solver.py) on the uniform mean of the last ``window`` refreshes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from .cubic_solver import cubic_step_sizes
from .heatmaps import render_bars, render_heatmap
from .partitions import Partition, build_partition
from .plateau import ReduceDampingOnPlateau
from .summaries import Summary, hessian_summary

SummaryLoss = Callable[[Mapping[str, torch.Tensor]], torch.Tensor]


def _split_named(params: Iterable) -> tuple[list[str], list[torch.Tensor]]:
    items = list(params)
    if not items:
        raise ValueError("NewtonSummary got an empty parameter list")
    if any(isinstance(item, dict) for item in items):
        raise ValueError("NewtonSummary takes one list of parameters (per-group options are not supported); "
                         "pass model.named_parameters()")
    if all(isinstance(item, tuple) and len(item) == 2 for item in items):
        return [str(n) for n, _ in items], [p for _, p in items]
    if all(isinstance(item, torch.Tensor) for item in items):
        return [f"param{i}" for i in range(len(items))], items
    raise ValueError("NewtonSummary needs model.named_parameters() (pairs name, tensor) or a list of tensors")


class NewtonSummary(torch.optim.Optimizer):
    """Per-subset step sizes from the order-2/3 summaries of the loss along momentum (SPEC 1.3).

    Hyperparameters (paper values in configs/optimizer/newton_summary.yaml):
        damping: lambda_1, multiplies every step (MLP 0.03, LeNet/VGG 0.3, BigMLP 0.1).
        lambda_int: internal cubic damping lambda_int of SPEC 1.2 (0 = plain order-2 step Hbar^-1 gbar).
        momentum: mu of the direction buffer u <- mu u + g (dampening 0).
        direction: "momentum" (the paper) or "adam" (u = Adam's bias-corrected m / (sqrt(v) + eps)).
        period: T, steps between two summary refreshes.
        summary_batch_size: size of the separate minibatch the summaries use (when bound to the runner).
        window: number of recent refreshes averaged uniformly (1 = no averaging).
        warmup: refreshes that only accumulate before the first step (parameters frozen meanwhile).
        remove_negative: clip negative eta_i to 0.
        partition: canonical | trivial | weights-biases | blocks-k | alternate-k | chunks-k (partitions.py).
        diagonal: the Appendix K ablation, Hbar replaced by diag(Hbar).
        plateau_factor, plateau_patience, plateau_threshold: ReduceDampingOnPlateau on lambda_1.
        seed: seeds the optimizer's own summary-batch generator (a stream distinct from the loop's).
        summary_loss: plain PyTorch: a function params_by_name -> loss on a fresh summary minibatch.
        strategy: how summaries are computed, "reverse" (fastest on the CPU) or "vmap" (see summaries.py).

    Usage in plain PyTorch (the runner instead calls ``bind(context)``)::

        import torch, torch.nn.functional as F
        from torch.func import functional_call
        from hoopt.optimizers.newton_summary import NewtonSummary

        model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10))
        x, y = torch.randn(1000, 64), torch.randint(0, 10, (1000,))
        batches = torch.Generator().manual_seed(1)

        def summary_loss(params):  # the loss on its own minibatch, as a function of the parameters
            index = torch.randint(0, len(x), (100,), generator=batches)
            return F.cross_entropy(functional_call(model, params, (x[index],)), y[index])

        optimizer = NewtonSummary(model.named_parameters(), damping=0.3, lambda_int=1.0,
                                  summary_loss=summary_loss)
        for step in range(200):
            index = torch.randint(0, len(x), (100,))
            def closure():
                optimizer.zero_grad()
                loss = F.cross_entropy(model(x[index]), y[index])
                loss.backward()
                return loss
            optimizer.step(closure)
        # once per epoch: optimizer.on_epoch_end(mean_training_loss)  (ReduceDampingOnPlateau)
    """

    wants_named_parameters = True

    def __init__(self, params, damping: float = 0.03, lambda_int: float = 1.0, momentum: float = 0.9,
                 direction: str = "momentum", period: int = 10, summary_batch_size: int = 100, window: int = 4,
                 warmup: int = 3, remove_negative: bool = True, partition: str | Partition = "canonical",
                 diagonal: bool = False, plateau_factor: float = 0.5, plateau_patience: int = 2,
                 plateau_threshold: float = 1e-4, adam_betas=(0.9, 0.999), adam_eps: float = 1e-8, seed: int = 0,
                 summary_loss: SummaryLoss | None = None, strategy: str = "reverse"):
        names, tensors = _split_named(params)
        if not (isinstance(damping, (int, float)) and math.isfinite(damping) and damping > 0):
            raise ValueError(f"damping (lambda_1) must be a positive number, got {damping}")
        if not (isinstance(lambda_int, (int, float)) and math.isfinite(lambda_int) and lambda_int >= 0):
            raise ValueError(f"lambda_int must be a number >= 0, got {lambda_int}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if direction not in ("momentum", "adam"):
            raise ValueError(f"direction must be 'momentum' or 'adam', got {direction!r}")
        for key, value, low in (("period", period, 1), ("summary_batch_size", summary_batch_size, 1),
                                ("window", window, 1), ("warmup", warmup, 0)):
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= low):
                raise ValueError(f"{key} must be a whole number >= {low}, got {value}")
        betas = tuple(float(b) for b in adam_betas)
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"adam_betas must be two numbers in [0, 1), got {adam_betas}")
        if not adam_eps > 0:
            raise ValueError(f"adam_eps must be positive, got {adam_eps}")
        if strategy not in ("reverse", "vmap"):
            raise ValueError(f"strategy must be 'reverse' or 'vmap', got {strategy!r}")
        if summary_loss is not None and not callable(summary_loss):
            raise ValueError("summary_loss must be a function params_by_name -> loss")
        super().__init__(tensors, dict(damping=float(damping), lambda_int=float(lambda_int),
                                       momentum=float(momentum)))
        self.param_names = names
        self.partition = build_partition(partition, names)
        self._group_of = self.partition.group_of()
        self.direction, self.period, self.summary_batch_size = direction, period, summary_batch_size
        self.window, self.warmup, self.remove_negative = window, warmup, bool(remove_negative)
        self.diagonal, self.adam_betas, self.adam_eps = bool(diagonal), betas, float(adam_eps)
        self.strategy, self.seed = strategy, int(seed)
        self.plateau = ReduceDampingOnPlateau(plateau_factor, plateau_patience, plateau_threshold)
        self._summary_loss = summary_loss
        self._context = None
        self._generator: torch.Generator | None = None
        self._pending_generator_state: torch.Tensor | None = None
        self._ns: dict[str, Any] = dict(step=0, refreshes=0, window=[], eta=None, ok=None, reason="", root=math.nan)

    # -- how the summaries get their loss ---------------------------------------------------------------
    def bind(self, context) -> None:
        """Runner hook: summaries use ``context.functional_loss`` on batches from ``context.sample_batch``."""
        self._context = context
        self._make_generator(context.device)

    def set_summary_loss(self, fn: SummaryLoss) -> None:
        """Plain PyTorch: ``fn(params_by_name)`` returns the loss on a fresh summary minibatch."""
        if not callable(fn):
            raise ValueError("set_summary_loss needs a function params_by_name -> loss")
        self._summary_loss = fn

    def _make_generator(self, device) -> None:
        self._generator = torch.Generator(device=device)
        # A stream distinct from the loop's sampler, which is seeded with the run's seed itself.
        self._generator.manual_seed((self.seed * 1_000_003 + 0x5EED) % 2**63)
        if self._pending_generator_state is not None:
            self._generator.set_state(self._pending_generator_state)
            self._pending_generator_state = None

    def _loss_of_params(self) -> SummaryLoss:
        if self._summary_loss is not None:
            return self._summary_loss
        if self._context is None:
            raise RuntimeError("NewtonSummary has no summary loss: call bind(context) (the runner does) or pass "
                               "summary_loss=fn / call set_summary_loss(fn) with fn(params_by_name) -> loss")
        context = self._context
        batch = context.sample_batch(self.summary_batch_size, self._generator)
        return lambda params: context.functional_loss(params, batch)

    # -- the step ---------------------------------------------------------------------------------------
    def _directions(self) -> dict[str, torch.Tensor]:
        group = self.param_groups[0]
        ns = self._ns
        ns["adam_step"] = ns.get("adam_step", 0) + 1
        directions = {}
        for name, p in zip(self.param_names, group["params"]):
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            state = self.state[p]
            if self.direction == "momentum":
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = g.detach().clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(g)
                directions[name] = state["momentum_buffer"]
            else:
                b1, b2 = self.adam_betas
                if "exp_avg" not in state:
                    state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
                state["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
                state["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
                t = ns["adam_step"]
                m_hat = state["exp_avg"] / (1 - b1 ** t)
                v_hat = state["exp_avg_sq"] / (1 - b2 ** t)
                directions[name] = m_hat / (v_hat.sqrt() + self.adam_eps)
        return directions

    def _refresh(self, directions: dict[str, torch.Tensor]) -> None:
        group = self.param_groups[0]
        params = {name: p for name, p in zip(self.param_names, group["params"])}
        summary = hessian_summary(self._loss_of_params(), params, directions, self.partition,
                                  third_order=group["lambda_int"] > 0, strategy=self.strategy)
        ns = self._ns
        ns["window"].append(Summary(*(x.detach().cpu() for x in summary)))
        del ns["window"][:-self.window]
        ns["refreshes"] += 1
        if ns["refreshes"] <= self.warmup:
            return  # warm-up: accumulate only (SPEC 1.3)
        mean = self.averaged_summary()
        hbar = torch.diag(mean.hbar.diagonal()) if self.diagonal else mean.hbar
        solution = cubic_step_sizes(mean.gbar, hbar, mean.d3, group["lambda_int"])
        ns["ok"], ns["reason"], ns["root"] = solution.ok, solution.reason, solution.root
        if solution.ok:  # on failure the previous eta is kept
            eta = solution.eta.clamp(min=0) if self.remove_negative else solution.eta
            ns["eta"] = eta

    def averaged_summary(self) -> Summary | None:
        """The uniform mean of the summaries in the window (None before the first refresh)."""
        window = self._ns["window"]
        if not window:
            return None
        return Summary(*(torch.stack(parts).mean(0) for parts in zip(*window)))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        directions = self._directions()
        ns = self._ns
        if ns["step"] % self.period == 0:
            self._refresh(directions)
        eta = ns["eta"]
        if eta is not None:
            group = self.param_groups[0]
            for name, p in zip(self.param_names, group["params"]):
                index = self._group_of.get(name)
                if index is None:
                    continue  # a tensor outside the partition stays fixed
                rate = group["damping"] * float(eta[index])
                if rate != 0:
                    p.add_(directions[name], alpha=-rate)
        ns["step"] += 1
        return loss

    def on_epoch_end(self, train_loss: float) -> None:
        """ReduceDampingOnPlateau on the epoch-mean training loss (SPEC 1.3)."""
        for group in self.param_groups:
            group["damping"] = self.plateau.update(float(train_loss), group["damping"])

    # -- logging ----------------------------------------------------------------------------------------
    def step_sizes(self) -> dict[str, float]:
        """lambda_1 * eta_i per group (0 until the first solve)."""
        damping = self.param_groups[0]["damping"]
        eta = self._ns["eta"]
        return {name: damping * (float(eta[i]) if eta is not None else 0.0)
                for i, name in enumerate(self.partition.group_names)}

    def diagnostics(self) -> dict[str, float]:
        out = {f"lr/{name}": value for name, value in self.step_sizes().items()}
        out["newton_summary/lambda_1"] = self.param_groups[0]["damping"]
        if self._ns["ok"] is not None:
            out["newton_summary/solver_ok"] = 1.0 if self._ns["ok"] else 0.0
            out["newton_summary/root_r"] = float(self._ns["root"])
        return out

    def images(self) -> dict[str, torch.Tensor]:
        mean = self.averaged_summary()
        if mean is None:
            return {}
        labels = list(self.partition.group_names)
        hbar = torch.diag(mean.hbar.diagonal()) if self.diagonal else mean.hbar
        inverse = torch.linalg.pinv(hbar) if torch.isfinite(hbar).all() else torch.full_like(hbar, math.nan)
        return {
            "summary/hbar": render_heatmap(hbar, labels, "Hbar"),
            "summary/hbar_inv": render_heatmap(inverse, labels, "Hbar^-1"),
            "summary/gbar": render_bars(mean.gbar, labels, "gbar"),
            "summary/d3": render_bars(mean.d3, labels, "D3 (diagonal)"),
        }

    # -- exact resume -----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = super().state_dict()
        ns = dict(self._ns)
        ns["window"] = [tuple(x.clone() for x in s) for s in ns["window"]]
        ns["eta"] = None if ns["eta"] is None else ns["eta"].clone()
        ns["plateau"] = self.plateau.state_dict()
        if self._generator is not None:
            ns["generator"] = self._generator.get_state()
        elif self._pending_generator_state is not None:
            ns["generator"] = self._pending_generator_state
        state["newton_summary"] = ns
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        ns = dict(state_dict.pop("newton_summary", {}))
        super().load_state_dict(state_dict)
        if not ns:
            return
        self.plateau.load_state_dict(ns.pop("plateau"))
        generator = ns.pop("generator", None)
        if generator is not None:
            if self._generator is not None:
                self._generator.set_state(generator)
            else:
                self._pending_generator_state = generator
        ns["window"] = [Summary(*(x.clone() for x in s)) for s in ns["window"]]
        ns["eta"] = None if ns["eta"] is None else ns["eta"].clone()
        self._ns = ns
