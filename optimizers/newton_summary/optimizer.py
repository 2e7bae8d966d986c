"""NewtonSummary: per-subset learning rates from Hessian summaries (arXiv:2312.03885, 2024 version, "Gathering and
Exploiting Higher-Order Information when Training Large Structured Models": Method 1 of Section 5, in the
practical form of Algorithm 2, Appendix 0.G; docs/methods/newton_summary.md).

Every step:  theta_p <- theta_p - lambda_1 * eta_{group(p)} * u_p,  u = heavy-ball momentum of the gradients.
Every ``period`` steps, gbar, Hbar and D3 are computed along u on a separate minibatch (summaries.py); eta
solves the cubic model of equation (10) (cubic_solver.py) on the uniform mean of the last ``window`` refreshes.

``compat="released"`` reproduces the authors' released optimizer instead (released.py; docs/methods/newton_summary.md,
"Released-compatible mode"): its averaging weights (``window`` is then its period P), its momentum buffer frozen
between refreshes during warm-up, and its plateau rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from ..protocol import Bars, Heatmap, LossSampler, TrainingHooks, Visual
from ..validation import (
    require_betas,
    require_bool,
    require_choice,
    require_in_range,
    require_int,
    require_non_negative,
    require_positive,
    require_probability,
)
from .cubic_solver import cubic_step_sizes
from .partitions import Partition, build_partition
from .plateau import ReduceDampingOnPlateau
from .released import first_needed, released_average
from .summaries import Summary, hessian_summary

SummaryLoss = Callable[[Mapping[str, torch.Tensor]], torch.Tensor]
DIRECTIONS = ("momentum", "adam")
COMPAT = ("none", "released")
# window=None means the mode's own: hoopt's 4-refresh uniform window, or the released averaging period P = 3 (the
# period of every released run script).
DEFAULT_WINDOW = {"none": 4, "released": 3}


def _validate(group: dict) -> None:
    """Checks every hyperparameter of the (single) group, normalising numbers in place."""
    group["damping"] = require_positive("damping (lambda_1)", group["damping"])
    group["lambda_int"] = require_non_negative("lambda_int", group["lambda_int"])
    group["momentum"] = require_probability("momentum", group["momentum"])
    require_choice("direction", group["direction"], DIRECTIONS)
    require_choice("compat", group["compat"], COMPAT)
    if group["window"] is None:
        group["window"] = DEFAULT_WINDOW[group["compat"]]
    for key, minimum in (("period", 1), ("summary_batch_size", 1), ("window", 1), ("warmup", 0)):
        group[key] = require_int(key, group[key], minimum)
    for key in ("remove_negative", "diagonal"):
        require_bool(key, group[key])
    if not isinstance(group["partition"], (str, Partition)):
        raise ValueError(f"partition must be a partition name such as 'canonical' or a Partition, got "
                         f"{group['partition']!r} (type {type(group['partition']).__name__})")
    group["plateau_factor"] = require_in_range("plateau_factor", group["plateau_factor"], 0.0, 1.0,
                                               low_inclusive=False)
    group["plateau_patience"] = require_int("plateau_patience", group["plateau_patience"], 0)
    group["plateau_threshold"] = require_non_negative("plateau_threshold", group["plateau_threshold"])
    group["adam_betas"] = require_betas("adam_betas", group["adam_betas"])
    group["adam_eps"] = require_positive("adam_eps", group["adam_eps"])
    group["seed"] = require_int("seed", group["seed"])
    group["lr_momentum"] = require_probability("lr_momentum", group["lr_momentum"])


class NewtonSummary(torch.optim.Optimizer, TrainingHooks):
    """Per-subset step sizes from the order-2/3 summaries of the loss along momentum.

    Every hyperparameter lives in ``param_groups[0]`` and is read there when it is used, so a scheduler or a
    checkpoint sees it, except ``partition`` (it fixes the number of subsets, hence the shape of everything
    accumulated: changing it later is refused) and ``seed`` (read once, to seed the summary sampler; after that
    the sampler's own state, saved in ``state_dict``, is what matters). Paper values in
    configs/optimizer/newton_summary.yaml.

    Args:
        params: ``model.named_parameters()``: the partitions are built from the names, so unnamed tensors are
            refused. One parameter group.
        damping: lambda_1, multiplies every step (MLP 0.03, LeNet/VGG 0.3, BigMLP 0.1).
        lambda_int: internal damping of the anisotropic cubic regularisation, equation (10)
            (0 = the plain order-2 step Hbar^-1 gbar).
        momentum: mu of the direction buffer u <- mu u + g (dampening 0).
        direction: "momentum" (the paper) or "adam" (u = Adam's bias-corrected m / (sqrt(v) + eps)).
        period: T, steps between two summary refreshes.
        summary_batch_size: size of the separate minibatch the summaries use (drawn from ``loss_sampler``).
        window: number of recent refreshes averaged uniformly (1 = no averaging; None = 4); with
            ``compat="released"``, the released code's averaging period P (None = 3, as in its runs), released.py.
        warmup: refreshes that only accumulate before the first step (parameters frozen meanwhile).
        remove_negative: clip negative eta_i to 0.
        partition: canonical | trivial | weights-biases | blocks-k | alternate-k | chunks-k (partitions.py,
            Appendix 0.J), or a Partition.
        diagonal: the Appendix 0.K ablation, Hbar replaced by diag(Hbar) (only its diagonal is computed).
        plateau_factor, plateau_patience, plateau_threshold: ReduceDampingOnPlateau on lambda_1 (Appendix 0.G).
        adam_betas, adam_eps: Adam's moments for ``direction="adam"``.
        seed: seeds the optimizer's own summary-batch generator (a stream distinct from the loop's).
        compat: "none" (hoopt's clean method) or "released" (the released code's semantics: averaging weights,
            momentum buffer frozen between warm-up refreshes, plateau rule; docs/methods/newton_summary.md).
        lr_momentum: momentum r on the step sizes ([W23]; the released ``mom_lrs``): at each successful solve
            eta_s <- r eta_s + (1 - r) eta, before negative entries are removed. 0 = off. The first solve sets
            eta_s = eta (``compat="released"``: eta_s starts at 0, as the released code does).
        summary_loss: plain PyTorch: a function params_by_name -> loss on a fresh summary minibatch.
        loss_sampler: the runner's :class:`~hoopt.optimizers.protocol.LossSampler`; each refresh draws
            ``loss_sampler.sample(summary_batch_size, generator)`` with the optimizer's own generator and
            differentiates ``loss_sampler.loss(params, batch)``. Exactly one of the two must be given.

    Usage in plain PyTorch::

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

    def __init__(self, params, damping: float = 0.03, lambda_int: float = 1.0, momentum: float = 0.9,
                 direction: str = "momentum", period: int = 10, summary_batch_size: int = 100,
                 window: int | None = None, warmup: int = 3, remove_negative: bool = True,
                 partition: str | Partition = "canonical", diagonal: bool = False, plateau_factor: float = 0.5,
                 plateau_patience: int = 2, plateau_threshold: float = 1e-4, adam_betas=(0.9, 0.999),
                 adam_eps: float = 1e-8, seed: int = 0, compat: str = "none", lr_momentum: float = 0.0,
                 *, summary_loss: SummaryLoss | None = None, loss_sampler: LossSampler | None = None):
        defaults = dict(damping=damping, lambda_int=lambda_int, momentum=momentum, direction=direction,
                        period=period, summary_batch_size=summary_batch_size, window=window, warmup=warmup,
                        remove_negative=remove_negative, partition=partition, diagonal=diagonal,
                        plateau_factor=plateau_factor, plateau_patience=plateau_patience,
                        plateau_threshold=plateau_threshold, adam_betas=adam_betas, adam_eps=adam_eps, seed=seed,
                        compat=compat, lr_momentum=lr_momentum)
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("NewtonSummary takes one parameter group (its partition spans all parameters); "
                             "pass model.named_parameters()")
        group = self.param_groups[0]
        if "param_names" not in group:
            raise ValueError("NewtonSummary needs parameter names, since its partitions are built from them: "
                             "pass model.named_parameters()")
        _validate(group)
        if (summary_loss is None) == (loss_sampler is None):
            raise ValueError("NewtonSummary needs exactly one way to evaluate its summaries: summary_loss=fn "
                             "(fn(params_by_name) -> loss on a fresh minibatch) or loss_sampler=... (the runner's)")
        if summary_loss is not None and not callable(summary_loss):
            raise ValueError("summary_loss must be a function params_by_name -> loss")
        if loss_sampler is not None and not (callable(getattr(loss_sampler, "sample", None))
                                             and callable(getattr(loss_sampler, "loss", None))):
            raise ValueError("loss_sampler must have sample(batch_size, generator) and loss(params, batch) "
                             "(protocol.LossSampler)")
        self._summary_loss, self._loss_sampler = summary_loss, loss_sampler
        self.param_names: list[str] = list(group["param_names"])
        self._partition_spec = group["partition"]
        self.partition = build_partition(self._partition_spec, list(zip(self.param_names, group["params"])))
        self._group_of = self.partition.group_of()
        self.plateau = ReduceDampingOnPlateau(group["plateau_factor"], group["plateau_patience"],
                                              group["plateau_threshold"])
        # The summaries' own minibatch stream, on the parameters' device (where the sampler draws indices).
        self._generator = torch.Generator(device=group["params"][0].device)
        # A stream distinct from the loop's sampler, which is seeded with the run's seed itself.
        self._generator.manual_seed((group["seed"] * 1_000_003 + 0x5EED) % 2**63)
        # window: the raw summaries kept for averaging; first_index: the refresh index of window[0];
        # eta_smooth: the step sizes before negative entries are removed (lr_momentum's state).
        self._ns: dict[str, Any] = dict(step=0, refreshes=0, window=[], first_index=0, eta=None, eta_smooth=None,
                                        ok=None, reason="", root=math.nan)
        self._refreshed = False  # a refresh happened since records() last ran (transient, not state)

    def _group(self) -> dict:
        group = self.param_groups[0]
        if group["partition"] != self._partition_spec:
            raise ValueError(f"NewtonSummary's partition is fixed at construction ({self._partition_spec!r}): it "
                             f"sets the shape of the accumulated summaries; param_groups now says "
                             f"{group['partition']!r}")
        return group

    # -- how the summaries get their loss ---------------------------------------------------------------
    def _loss_of_params(self, group: dict) -> SummaryLoss:
        if self._summary_loss is not None:
            return self._summary_loss
        sampler = self._loss_sampler
        batch = sampler.sample(group["summary_batch_size"], self._generator)
        return lambda params: sampler.loss(params, batch)

    # -- the step ---------------------------------------------------------------------------------------
    def _directions(self, group: dict) -> dict[str, torch.Tensor]:
        ns = self._ns
        ns["adam_step"] = ns.get("adam_step", 0) + 1
        directions = {}
        for name, p in zip(self.param_names, group["params"]):
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            state = self.state[p]
            if group["direction"] == "momentum":
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = g.detach().clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(g)
                directions[name] = state["momentum_buffer"]
            else:
                b1, b2 = group["adam_betas"]
                if "exp_avg" not in state:
                    state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
                state["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
                state["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
                t = ns["adam_step"]
                m_hat = state["exp_avg"] / (1 - b1 ** t)
                v_hat = state["exp_avg_sq"] / (1 - b2 ** t)
                directions[name] = m_hat / (v_hat.sqrt() + group["adam_eps"])
        return directions

    def _refresh(self, group: dict, directions: dict[str, torch.Tensor]) -> None:
        params = {name: p for name, p in zip(self.param_names, group["params"])}
        summary = hessian_summary(self._loss_of_params(group), params, directions, self.partition,
                                  third_order=group["lambda_int"] > 0, diagonal=group["diagonal"])
        ns = self._ns
        k = ns["refreshes"]  # this refresh's index
        ns["window"].append(Summary(*(x.detach().cpu() for x in summary)))
        ns["refreshes"] += 1
        if group["compat"] == "released":
            mean = released_average(ns["window"], ns["first_index"], k, group["window"])
            keep = first_needed(k + 1, group["window"])  # the next refresh needs nothing older
            drop = max(0, min(keep - ns["first_index"], len(ns["window"])))
        else:
            drop = max(0, len(ns["window"]) - group["window"])
            mean = None
        del ns["window"][:drop]
        ns["first_index"] += drop
        ns["mean"] = mean
        if ns["refreshes"] <= group["warmup"]:
            return  # warm-up: accumulate only (Algorithm 2's first refreshes)
        mean = self.averaged_summary()
        hbar = torch.diag(mean.hbar.diagonal()) if group["diagonal"] else mean.hbar
        solution = cubic_step_sizes(mean.gbar, hbar, mean.d3, group["lambda_int"])
        ns["ok"], ns["reason"], ns["root"] = solution.ok, solution.reason, solution.root
        if not solution.ok:  # the previous eta is kept
            return
        rate, smooth = group["lr_momentum"], ns["eta_smooth"]
        if smooth is None:  # the released code starts its average at 0 unless the first solve is at step 0
            smooth = torch.zeros_like(solution.eta) if group["compat"] == "released" and ns["step"] > 0 \
                else solution.eta
        smooth = rate * smooth + (1 - rate) * solution.eta if rate > 0 else solution.eta
        ns["eta_smooth"] = smooth
        ns["eta"] = smooth.clamp(min=0) if group["remove_negative"] else smooth

    def averaged_summary(self) -> Summary | None:
        """The summaries the solver uses: the uniform mean of the window, or with ``compat="released"`` the
        released code's weighted sum at the last refresh (None before the first refresh)."""
        window = self._ns["window"]
        if not window and self._ns.get("mean") is None:
            return None
        if self.param_groups[0]["compat"] == "released":
            mean = self._ns.get("mean")
            if mean is None:  # a state saved before the mean was kept: recompute it
                k = self._ns["refreshes"] - 1
                mean = released_average(window, self._ns["first_index"], k, self.param_groups[0]["window"])
            return mean
        return Summary(*(torch.stack(parts).mean(0) for parts in zip(*window)))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        group = self._group()
        ns = self._ns
        refresh = ns["step"] % group["period"] == 0
        # The released code moves its momentum buffer only on the refresh steps of the warm-up (the parameters
        # do not move then; the other warm-up gradients are thrown away).
        frozen = group["compat"] == "released" and not refresh and ns["refreshes"] <= group["warmup"]
        directions = self._current_directions(group) if frozen else self._directions(group)
        if refresh:
            self._refresh(group, directions)
            self._refreshed = True  # records() hands this refresh's summaries to the runner once
        eta = ns["eta"]
        if eta is not None:
            for name, p in zip(self.param_names, group["params"]):
                index = self._group_of.get(name)
                if index is None:
                    continue  # a tensor outside the partition stays fixed
                rate = group["damping"] * float(eta[index])
                if rate != 0:
                    p.add_(directions[name], alpha=-rate)
        ns["step"] += 1
        return loss

    def _current_directions(self, group: dict) -> dict[str, torch.Tensor]:
        """The direction as it stands, without this step's gradient."""
        directions = {}
        for name, p in zip(self.param_names, group["params"]):
            state = self.state[p]
            buffer = state.get("momentum_buffer")
            if group["direction"] == "adam" and "exp_avg" in state:
                t = max(self._ns.get("adam_step", 1), 1)
                b1, b2 = group["adam_betas"]
                buffer = (state["exp_avg"] / (1 - b1 ** t)) / ((state["exp_avg_sq"] / (1 - b2 ** t)).sqrt()
                                                               + group["adam_eps"])
            directions[name] = buffer if buffer is not None else torch.zeros_like(p)
        return directions

    # -- the loop's hooks (protocol.TrainingHooks) -------------------------------------------------------
    def on_epoch_end(self, train_loss: float) -> None:
        """ReduceDampingOnPlateau on the epoch-mean training loss (Appendix 0.G), with the group's settings."""
        group = self.param_groups[0]
        plateau = self.plateau
        plateau.factor, plateau.patience = group["plateau_factor"], group["plateau_patience"]
        plateau.threshold = group["plateau_threshold"]
        plateau.reset = "reducing_epoch" if group["compat"] == "released" else "forget"
        group["damping"] = plateau.update(float(train_loss), group["damping"])

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

    def visuals(self) -> dict[str, Visual]:
        """The averaged summaries (Figure 1 of the papers shows Hbar and its inverse), once there are any."""
        mean = self.averaged_summary()
        if mean is None:
            return {}
        labels = list(self.partition.group_names)
        hbar = torch.diag(mean.hbar.diagonal()) if self.param_groups[0]["diagonal"] else mean.hbar
        inverse = torch.linalg.pinv(hbar) if torch.isfinite(hbar).all() else torch.full_like(hbar, math.nan)
        return {
            "summary/hbar": Heatmap(hbar, labels, "Hbar"),
            "summary/hbar_inv": Heatmap(inverse, labels, "Hbar^-1"),
            "summary/gbar": Bars(mean.gbar, labels, "gbar"),
            "summary/d3": Bars(mean.d3, labels, "D3 (diagonal)"),
        }

    def records(self) -> dict[str, torch.Tensor]:
        """After a refresh: the averaged summaries the solver used (gbar, Hbar, D3), this refresh's own ones
        (``summary/raw_*``) and the step sizes lambda_1 eta (NaN before the first solve)."""
        if not self._refreshed:
            return {}
        self._refreshed = False
        mean, raw = self.averaged_summary(), self._ns["window"][-1] if self._ns["window"] else None
        rates = torch.tensor(list(self.step_sizes().values()), dtype=torch.float64)
        if self._ns["eta"] is None:
            rates = torch.full_like(rates, math.nan)
        out = {"summary/gbar": mean.gbar, "summary/hbar": mean.hbar, "summary/d3": mean.d3, "summary/lr": rates}
        if raw is not None:
            out.update({"summary/raw_gbar": raw.gbar, "summary/raw_hbar": raw.hbar, "summary/raw_d3": raw.d3})
        return out

    # -- exact resume -----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = super().state_dict()
        ns = dict(self._ns)
        ns["window"] = [tuple(x.clone() for x in s) for s in ns["window"]]
        ns["eta"] = None if ns["eta"] is None else ns["eta"].clone()
        ns["eta_smooth"] = None if ns["eta_smooth"] is None else ns["eta_smooth"].clone()
        if ns.get("mean") is not None:
            ns["mean"] = tuple(x.clone() for x in ns["mean"])
        ns["plateau"] = self.plateau.state_dict()
        ns["generator"] = self._generator.get_state()
        state["newton_summary"] = ns
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        ns = dict(state_dict.pop("newton_summary", {}))
        saved_partition = state_dict["param_groups"][0].get("partition", self._partition_spec)
        if saved_partition != self._partition_spec:
            raise ValueError(f"the saved NewtonSummary state has partition={saved_partition!r} but this optimizer "
                             f"has {self._partition_spec!r}; resume with the checkpoint's partition")
        super().load_state_dict(state_dict)
        for key, value in (("compat", "none"), ("lr_momentum", 0.0)):  # a checkpoint from before these existed
            self.param_groups[0].setdefault(key, value)
        _validate(self.param_groups[0])
        if not ns:
            return
        self.plateau.load_state_dict(ns.pop("plateau"))
        generator = ns.pop("generator", None)
        if generator is not None:
            self._generator.set_state(generator)
        ns["window"] = [Summary(*(x.clone() for x in s)) for s in ns["window"]]
        ns["eta"] = None if ns["eta"] is None else ns["eta"].clone()
        ns.setdefault("first_index", max(0, ns["refreshes"] - len(ns["window"])))
        ns["eta_smooth"] = None if ns.get("eta_smooth") is None else ns["eta_smooth"].clone()
        ns["mean"] = None if ns.get("mean") is None else Summary(*(x.clone() for x in ns["mean"]))
        self._ns = ns
