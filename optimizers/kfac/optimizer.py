"""K-FAC (Martens & Grosse 2015; KFC for convolutions, Grosse & Martens 2016), the NewtonSummary papers'
baseline (docs/methods/kfac.md).

Conventions (they differ between published implementations):

- Layers: ``nn.Linear`` and ungrouped ``nn.Conv2d`` whose weight (and bias, if any) are in the same
  parameter group; everything else (BatchNorm, embeddings, depthwise convs) takes the plain gradient.
  Bias-free layers simply have no homogeneous 1 in their input vector.
- Factors (factors.py): the gradient of ``[W | b]`` is an (out, in [+1]) matrix; A = mean over examples
  and output locations of a a^T (a = input / patch with a trailing 1 for the bias), G = (1/N) sum over
  examples and locations of g g^T with g = d loss_n / d s the per-example output gradient (N times the
  gradient of the batch-mean loss, which the loss is assumed to be). Fisher block ~ kron(G, A).
- Fisher: ``fisher="true"`` (default) samples labels from softmax(logits) with the optimizer's own
  ``torch.Generator`` (saved in ``state_dict``) and back-propagates sum_n CE(logits_n, y_n) to the
  layer outputs only; ``"empirical"`` uses the gradients of the training loss itself (forced when
  the model is not a classifier, ``classifier=False``).
- Statistics: exponential moving averages F <- decay F + (1 - decay) F_batch, the first batch
  initialising them, captured only on steps k with k % cov_update_every == 0 (0-based step counter).
- Damping (inverses.py): refreshed on steps k % inv_update_every == 0 (and as soon as a layer first
  has factors) with the damping of that moment. ``damping_style="factored"`` (Martens & Grosse 2015,
  section 6.3, without the pi rescaling): V = (G + sqrt(d) I)^{-1} grad (A + sqrt(d) I)^{-1}, by explicit
  inverses (``inverse_method="inverse"``) or eigendecompositions (``"eigen"``, same result);
  ``"kronecker"`` (eigen only): V = (kron(G, A) + d I)^{-1} grad, the exact damped inverse.
- KL clipping (Ba, Grosse & Martens 2017): all K-FAC directions are scaled by
  nu = min(1, sqrt(kl_clip / sum_layers lr^2 <V, grad>)); plain-gradient parameters are not scaled.
- Update (SGD with momentum on the preconditioned gradient, weight decay added after
  preconditioning, to every parameter): d = V (or grad) + wd * p; buf <- momentum * buf + d
  (buf = d on the first step); p <- p - lr * buf.
- Statistics are captured only inside a step (the closure's forward and backward) or, without a closure,
  between ``zero_grad()`` and ``step()``: any other forward (an observer such as the Hbar probe) neither
  enters the factors nor draws labels. ``no_capture()`` also excludes forwards inside a step's window.

``flavour="papers"`` follows the K-FAC implementation the NewtonSummary papers used (alecwangcq/KFAC-Pytorch,
docs/methods/kfac.md "The papers' flavour") instead: the running factors start at the identity (the first update
gives decay I + (1 - decay) F_batch), the damping is added once to the products of eigenvalues,
V = Q_G [(Q_G^T grad Q_A) / (lambda_G lambda_A^T + d)] Q_A^T with eigenvalues <= 1e-10 set to 0 and the
decompositions in the factors' own precision, inversions only on the steps k % inv_update_every == 0 (and as soon
as a layer first has factors, which is step 0 in any ordinary run), the KL sum with the first group's lr, and
weight decay only from step 20 * cov_update_every on.
"""

from __future__ import annotations

import time
import warnings
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch
from torch import nn

from ..protocol import TrainingHooks, Visual
from ..validation import require_choice, require_int, require_non_negative, require_positive, require_probability
from .model_argument import model_and_params
from .capture import FactorCapture, LabelSampler
from .factors import grad_matrix, is_supported_layer, split_matrix
from .inverses import (
    DAMPING_STYLES,
    INVERSE_METHODS,
    damped_inverse,
    eigen_scale,
    eigendecomposition,
    kl_clip_scale,
    precondition_with_eigen,
    precondition_with_inverses,
)
from .momentum import momentum_sgd_update

FISHER_TYPES = ("true", "empirical")
FLAVOURS = ("clean", "papers")
# inverse_method / damping_style when left None: each flavour's own. The papers' implementation has only one form.
FLAVOUR_INVERSES = {"clean": ("inverse", "factored"), "papers": ("eigen", "kronecker")}
PAPERS_EIGENVALUE_FLOOR = 1e-10  # the papers' implementation sets eigenvalues at or below this to 0
PAPERS_WEIGHT_DECAY_START = 20  # x cov_update_every: the papers' implementation's first weight-decay step
# One value for all parameter groups: KL clipping scales every layer by one factor, the factor captures and
# inverse refreshes follow one step counter, one generator samples the labels of every layer.
SHARED = ("kl_clip", "cov_update_every", "inv_update_every", "fisher", "seed", "flavour")
_INVERSE_KEYS = ("kfac_A_inv", "kfac_G_inv")
_EIGEN_KEYS = ("kfac_A_vecs", "kfac_G_vecs", "kfac_scale")


def _validate(groups: list[dict]) -> None:
    """Checks every hyperparameter of every group (normalising numbers in place) and that the SHARED ones agree."""
    for group in groups:
        group["lr"] = require_positive("lr", group["lr"])
        group["momentum"] = require_probability("momentum", group["momentum"])
        group["stat_decay"] = require_probability("stat_decay", group["stat_decay"])
        group["damping"] = require_positive("damping", group["damping"])
        if group["kl_clip"] is not None:  # None disables KL clipping
            group["kl_clip"] = require_positive("kl_clip (or None to disable it)", group["kl_clip"])
        group["weight_decay"] = require_non_negative("weight_decay", group["weight_decay"])
        for key in ("cov_update_every", "inv_update_every"):
            group[key] = require_int(key, group[key], 1)
        require_choice("fisher", group["fisher"], FISHER_TYPES)
        require_choice("flavour", group["flavour"], FLAVOURS)
        _resolve_inverse_form(group)
        require_choice("inverse_method", group["inverse_method"], INVERSE_METHODS)
        require_choice("damping_style", group["damping_style"], DAMPING_STYLES)
        if group["damping_style"] == "kronecker" and group["inverse_method"] != "eigen":
            raise ValueError("damping_style='kronecker' needs inverse_method='eigen' (the exact damped inverse is "
                             "computed in the factors' eigenbases)")
        group["seed"] = require_int("seed", group["seed"])
    for key in SHARED:
        values = {repr(group[key]) for group in groups}
        if len(values) > 1:
            raise ValueError(f"K-FAC's {key} must be the same in every parameter group (it applies to all layers "
                             f"together), got {', '.join(sorted(values))}")


def _resolve_inverse_form(group: dict) -> None:
    """inverse_method / damping_style: None becomes the flavour's own; the papers' flavour has only its own."""
    for key, value in zip(("inverse_method", "damping_style"), FLAVOUR_INVERSES[group["flavour"]]):
        if group[key] is None:
            group[key] = value
        elif group["flavour"] == "papers" and group[key] != value:
            raise ValueError(f"flavour='papers' inverts as the papers' implementation does (inverse_method='eigen', "
                             f"damping_style='kronecker'), got {key}={group[key]!r}; leave it unset (null)")


class KFAC(torch.optim.Optimizer, TrainingHooks):
    """K-FAC preconditioned SGD with momentum for Linear/Conv2d layers (see the module docstring).

    Plain PyTorch::

        model = hoopt.models.build_model("lenet")
        opt = KFAC(model, lr=0.01)   # or KFAC(model.named_parameters(), lr=0.01, model=model)
        for inputs, targets in loader:
            def closure():
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(inputs), targets)  # batch mean
                loss.backward()
                return loss
            opt.step(closure)

    ``opt.step()`` without a closure also works (``opt.zero_grad()``, forward, backward, then ``step()``): on a
    covariance step the grad-enabled forwards between ``zero_grad()`` and ``step()`` are the step's statistics.
    Forwards at any other time (between ``step()`` and the next ``zero_grad()``, or inside ``no_capture()``)
    are ignored and draw no labels.

    Every hyperparameter lives in ``param_groups`` and is read there when it is used. ``lr``, ``momentum``,
    ``weight_decay``, ``damping``, ``stat_decay``, ``inverse_method`` and ``damping_style`` may differ between
    groups (the last three take effect at the next inverse refresh); those of ``SHARED`` must agree across
    groups. ``seed`` is read once, to seed the label generator, whose state ``state_dict`` then carries.

    Args:
        params: an ``nn.Module`` (its named parameters, and the model itself), or parameters / named
            parameters / parameter groups together with ``model``.
        lr: learning rate. momentum: heavy-ball coefficient. weight_decay: L2 coefficient added to
        the preconditioned direction. stat_decay: EMA decay of the factors. damping: Tikhonov
        damping d. kl_clip: KL-clipping bound (None disables it). cov_update_every /
        inv_update_every: periods (steps) of the factor and inverse updates. fisher: "true" or
        "empirical". inverse_method: "inverse" or "eigen". damping_style: "factored" or
        "kronecker" (eigen only); None: the flavour's ("inverse"/"factored" clean, "eigen"/"kronecker" papers).
        seed: seed of the label-sampling generator (None: torch.initial_seed()). flavour: "clean" (hoopt's
        conventions) or "papers" (the NewtonSummary papers' K-FAC implementation; see the module docstring).
        model: the ``nn.Module`` whose Linear/Conv2d layers are hooked (the runner passes it).
        classifier: False when the model does not output class logits trained with cross-entropy: the
            labels cannot be sampled from it, so the empirical Fisher is used (``fisher`` becomes "empirical").
        label_sampler: the true Fisher's labels, ``label_sampler(logits) -> labels`` (one class index per row),
            called once per covariance step; None (default) samples softmax(logits) with the optimizer's own seeded
            generator. A test feeds recorded labels through it.
    """

    def __init__(
        self,
        params: Any,
        lr: float = 0.01,
        momentum: float = 0.9,
        stat_decay: float = 0.95,
        damping: float = 0.03,
        kl_clip: float | None = 0.01,
        weight_decay: float = 0.003,
        cov_update_every: int = 10,
        inv_update_every: int = 100,
        fisher: str = "true",
        inverse_method: str | None = None,
        damping_style: str | None = None,
        seed: int | None = None,
        flavour: str = "clean",
        *,
        model: nn.Module | None = None,
        classifier: bool = True,
        label_sampler: LabelSampler | None = None,
    ) -> None:
        model, params = model_and_params(params, model, "KFAC")
        if not isinstance(classifier, bool):
            raise ValueError(f"classifier must be true or false, got {classifier!r}")
        if label_sampler is not None and not callable(label_sampler):
            raise ValueError("label_sampler must be a function logits -> labels (or None for the optimizer's own)")
        seed = int(torch.initial_seed() % 2**63) if seed is None else seed
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, damping=damping, stat_decay=stat_decay,
                        kl_clip=kl_clip, cov_update_every=cov_update_every, inv_update_every=inv_update_every,
                        fisher=fisher, inverse_method=inverse_method, damping_style=damping_style, seed=seed,
                        flavour=flavour)
        super().__init__(params, defaults)
        if not classifier:  # no logits to sample labels from: the gradients of the training loss itself
            for group in self.param_groups:
                group["fisher"] = "empirical"
        _validate(self.param_groups)
        self._step_index = 0
        self._inverse_due = False
        self._warned_no_capture = False
        self._inversion_ms = 0.0
        self._kl_scale: torch.Tensor | None = None
        self._layers: list[nn.Module] = []
        self._layer_group: dict[nn.Module, int] = {}  # index, since load_state_dict replaces the dicts
        group_of = {id(p): index for index, group in enumerate(self.param_groups) for p in group["params"]}
        for module in model.modules():
            if not is_supported_layer(module) or id(module.weight) not in group_of:
                continue
            index = group_of[id(module.weight)]
            if module.bias is not None and group_of.get(id(module.bias)) != index:
                continue  # bias frozen or in another group: leave the layer to the plain gradient
            self._layers.append(module)
            self._layer_group[module] = index
        # A CPU generator, so that its saved state does not depend on where the run trains (capture.sample_labels).
        generator = torch.Generator().manual_seed(self.param_groups[0]["seed"] % 2**63)
        self._capture = FactorCapture(self._layers, self.param_groups[0]["fisher"], generator, label_sampler)
        self._capture.attach(model)
        self._in_step = False

    @property
    def generator(self) -> torch.Generator:
        """The label-sampling generator."""
        return self._capture.generator

    def _shared(self, key: str) -> Any:
        """A SHARED hyperparameter, as it is now (refused when the groups disagree)."""
        value = self.param_groups[0][key]
        if any(group[key] != value for group in self.param_groups[1:]):
            raise ValueError(f"K-FAC's {key} must be the same in every parameter group (it applies to all layers "
                             f"together), got {[group[key] for group in self.param_groups]}")
        return value

    # ----------------------------------------------------------------- step
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clears the gradients; outside a step (the plain-PyTorch pattern zero_grad, forward, backward,
        ``step()``) it also opens the capture window of a covariance step."""
        super().zero_grad(set_to_none=set_to_none)
        if not self._in_step:
            self._capture.reset()
            self._capture.armed = self._step_index % self._shared("cov_update_every") == 0

    @contextmanager
    def no_capture(self) -> Iterator[None]:
        """Forwards and backwards inside this block are not K-FAC statistics and draw no labels (for observers
        that run the model between steps, such as the Hbar probe)."""
        paused, self._capture.paused = self._capture.paused, True
        try:
            yield
        finally:
            self._capture.paused = paused

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        cov_every = self._shared("cov_update_every")
        self._capture.fisher = self._shared("fisher")
        capture_step = self._step_index % cov_every == 0
        loss = None
        self._in_step = True
        try:
            if closure is not None:
                self._capture.reset()
                self._capture.armed = capture_step
                with torch.enable_grad():
                    loss = closure()
        finally:
            self._capture.armed = False
            self._in_step = False
        captured = self._capture.take()
        if capture_step:
            if self._layers and not captured and not self._warned_no_capture:
                warnings.warn(
                    "K-FAC captured no factor statistics on a covariance step: the closure (or, without a closure, "
                    "the code between optimizer.zero_grad() and step()) must run a grad-enabled forward of the "
                    "registered model returning logits, then backward; until it does, K-FAC layers take the plain "
                    "gradient.",
                    stacklevel=2,
                )
                self._warned_no_capture = True
            self._update_factors(captured)
        if self._inverse_due or self._step_index % self._shared("inv_update_every") == 0:
            self.update_inverses()
        self._apply_update()
        self._step_index += 1
        return loss

    def _has_factors(self, layer: nn.Module) -> bool:
        return "kfac_A" in self.state[layer.weight]

    def _has_inverse(self, layer: nn.Module) -> bool:
        state = self.state[layer.weight]
        return "kfac_A_inv" in state or "kfac_A_vecs" in state

    def _update_factors(self, captured: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]]) -> None:
        papers = self._shared("flavour") == "papers"
        for layer, (a_factor, g_factor) in captured.items():
            state, decay = self.state[layer.weight], self._group(layer)["stat_decay"]
            if "kfac_A" not in state:
                if papers:  # the running averages start at the identity and take this batch at once
                    a_factor = _identity_like(a_factor).mul_(decay).add_(a_factor, alpha=1 - decay)
                    g_factor = _identity_like(g_factor).mul_(decay).add_(g_factor, alpha=1 - decay)
                state["kfac_A"], state["kfac_G"] = a_factor, g_factor
                self._inverse_due = True
            else:
                state["kfac_A"].mul_(decay).add_(a_factor, alpha=1 - decay)
                state["kfac_G"].mul_(decay).add_(g_factor, alpha=1 - decay)

    def update_inverses(self) -> None:
        """Recompute the damped inverses (or eigendecompositions) from the current factors now, with each
        group's current damping, inverse_method and damping_style; ``step`` calls it every ``inv_update_every``
        steps."""
        start = _synchronized_clock(self._layers)
        papers = self._shared("flavour") == "papers"
        for layer in self._layers:
            state = self.state[layer.weight]
            if "kfac_A" not in state:
                continue
            group = self._group(layer)
            _resolve_inverse_form(group)  # refuses a form the papers' flavour does not have
            damping = group["damping"]
            stale = _EIGEN_KEYS if group["inverse_method"] == "inverse" else _INVERSE_KEYS
            for key in stale:  # the other method's decomposition, should inverse_method have changed
                state.pop(key, None)
            if group["inverse_method"] == "inverse":
                state["kfac_A_inv"] = damped_inverse(state["kfac_A"], damping**0.5)
                state["kfac_G_inv"] = damped_inverse(state["kfac_G"], damping**0.5)
            elif papers:
                a_values, state["kfac_A_vecs"] = papers_eigendecomposition(state["kfac_A"])
                g_values, state["kfac_G_vecs"] = papers_eigendecomposition(state["kfac_G"])
                state["kfac_scale"] = eigen_scale(g_values, a_values, damping, "kronecker")
            else:
                a_values, state["kfac_A_vecs"] = eigendecomposition(state["kfac_A"])
                g_values, state["kfac_G_vecs"] = eigendecomposition(state["kfac_G"])
                state["kfac_scale"] = eigen_scale(g_values, a_values, damping, group["damping_style"])
        self._inverse_due = False
        self._inversion_ms = (_synchronized_clock(self._layers) - start) * 1000.0

    def _group(self, layer: nn.Module) -> dict:
        return self.param_groups[self._layer_group[layer]]

    def preconditioned_gradient(self, layer: nn.Module) -> torch.Tensor | None:
        """The layer's preconditioned (out, in [+1]) gradient matrix V (before KL clipping), or None."""
        grad = grad_matrix(layer)
        return None if grad is None or not self._has_inverse(layer) else self._precondition(layer, grad)

    def _precondition(self, layer: nn.Module, grad: torch.Tensor) -> torch.Tensor:
        state = self.state[layer.weight]
        if "kfac_A_inv" in state:  # whichever decomposition the last refresh stored
            return precondition_with_inverses(grad, state["kfac_G_inv"], state["kfac_A_inv"])
        return precondition_with_eigen(grad, state["kfac_G_vecs"], state["kfac_A_vecs"], state["kfac_scale"])

    def _apply_update(self) -> None:
        directions: dict[nn.Module, torch.Tensor] = {}
        step_dot_grad = None
        papers = self._shared("flavour") == "papers"
        for layer in self._layers:
            grad = grad_matrix(layer)
            if grad is None or not self._has_inverse(layer):
                continue
            direction = self._precondition(layer, grad)
            lr = self.param_groups[0]["lr"] if papers else self._group(layer)["lr"]  # papers: one lr for the sum
            term = torch.sum(direction * grad) * lr ** 2
            step_dot_grad = term if step_dot_grad is None else step_dot_grad + term
            directions[layer] = direction
        kl_clip = self._shared("kl_clip")
        if directions and kl_clip is not None:
            self._kl_scale = kl_clip_scale(step_dot_grad, kl_clip)
            for direction in directions.values():
                direction.mul_(self._kl_scale)
        by_param: dict[torch.Tensor, torch.Tensor] = {}
        for layer, direction in directions.items():
            weight_part, bias_part = split_matrix(layer, direction)
            by_param[layer.weight] = weight_part
            if bias_part is not None:
                by_param[layer.bias] = bias_part
        decay_on = not papers or self._step_index >= PAPERS_WEIGHT_DECAY_START * self._shared("cov_update_every")
        for group in self.param_groups:
            momentum_sgd_update(group, by_param, self.state, weight_decay=group["weight_decay"] if decay_on else 0.0)

    # ----------------------------------------------------------------- the loop's hooks (protocol.TrainingHooks)
    def diagnostics(self) -> dict[str, float]:
        """kfac/damping, kfac/step_norm (norm of the last update lr * buf), kfac/inversion_ms (last
        inverse refresh, all layers), kfac/kl_scale (the KL-clipping factor nu of the last step)."""
        squared = 0.0
        for group in self.param_groups:
            for p in group["params"]:
                buf = self.state[p].get("momentum_buffer")
                if buf is not None:
                    squared += group["lr"] ** 2 * float(buf.double().pow(2).sum())
        return {
            "kfac/damping": float(self.param_groups[0]["damping"]),
            "kfac/step_norm": squared**0.5,
            "kfac/inversion_ms": float(self._inversion_ms),
            "kfac/kl_scale": 1.0 if self._kl_scale is None else float(self._kl_scale),
        }

    def visuals(self) -> dict[str, Visual]:
        return {}  # the factors are per layer and large; the scalars above say what K-FAC is doing

    def on_epoch_end(self, train_loss: float) -> None:
        pass  # no per-epoch schedule: damping stays as configured

    # ----------------------------------------------------------------- exact resume
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["kfac"] = {"step_index": self._step_index, "generator": self.generator.get_state()}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        extras = state_dict.pop("kfac", None)
        super().load_state_dict(state_dict)
        for group in self.param_groups:  # a checkpoint from before the flavours existed
            group.setdefault("flavour", "clean")
        _validate(self.param_groups)
        if extras is None:
            return
        self._step_index = int(extras["step_index"])
        if extras.get("generator") is not None:
            self.generator.set_state(extras["generator"])
        self._capture.armed = False  # the next zero_grad() or step(closure) opens the capture window
        self._inverse_due = any(self._has_factors(l) and not self._has_inverse(l) for l in self._layers)


def _identity_like(factor: torch.Tensor) -> torch.Tensor:
    return torch.eye(factor.shape[0], dtype=factor.dtype, device=factor.device)


def papers_eigendecomposition(factor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The papers' implementation: eigh of the factor as it is (its lower triangle, in its own precision), with
    eigenvalues at or below 1e-10 (negative ones included) set to exactly 0."""
    values, vectors = torch.linalg.eigh(factor)
    return values * (values > PAPERS_EIGENVALUE_FLOOR), vectors


def _synchronized_clock(layers: list[nn.Module]) -> float:
    """perf_counter after the device has finished queued work (only CUDA needs the sync)."""
    if layers and layers[0].weight.is_cuda:
        torch.cuda.synchronize(layers[0].weight.device)
    return time.perf_counter()
