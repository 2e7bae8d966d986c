"""K-FAC (Martens & Grosse 2015; KFC for convolutions, Grosse & Martens 2016), the baseline of SPEC 3.

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
  the loop says the model is not a classifier).
- Statistics: exponential moving averages F <- decay F + (1 - decay) F_batch, the first batch
  initialising them, captured only on steps k with k % cov_update_every == 0 (0-based step counter).
- Damping (inverses.py): refreshed on steps k % inv_update_every == 0 (and as soon as a layer first
  has factors) with the damping of that moment. ``damping_style="factored"`` (SPEC 3):
  V = (G + sqrt(d) I)^{-1} grad (A + sqrt(d) I)^{-1}, by explicit inverses
  (``inverse_method="inverse"``) or eigendecompositions (``"eigen"``, same result);
  ``"kronecker"`` (eigen only): V = (kron(G, A) + d I)^{-1} grad, the exact damped inverse.
- KL clipping (Ba et al. 2017): all K-FAC directions are scaled by
  nu = min(1, sqrt(kl_clip / sum_layers lr^2 <V, grad>)); plain-gradient parameters are not scaled.
- Update (SGD with momentum on the preconditioned gradient, weight decay added after
  preconditioning, to every parameter): d = V (or grad) + wd * p; buf <- momentum * buf + d
  (buf = d on the first step); p <- p - lr * buf.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Callable

import torch
from torch import nn

from .capture import FactorCapture
from .factors import grad_matrix, is_supported_layer, split_matrix
from .inverses import (
    damped_inverse,
    eigen_scale,
    eigendecomposition,
    kl_clip_scale,
    precondition_with_eigen,
    precondition_with_inverses,
)
from .momentum import momentum_sgd_update
from .validation import validate_kfac_arguments


class KFAC(torch.optim.Optimizer):
    """K-FAC preconditioned SGD with momentum for Linear/Conv2d layers (see the module docstring).

    Plain PyTorch::

        model = hoopt.models.build_model("lenet")
        opt = KFAC(model, lr=0.01)   # or KFAC(model.parameters(), lr=0.01) then opt.register_model(model)
        for inputs, targets in loader:
            def closure():
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(inputs), targets)  # batch mean
                loss.backward()
                return loss
            opt.step(closure)

    ``opt.step()`` without a closure also works (forward/backward first, then ``step()``): the hooks
    stay armed between steps when the next step is a covariance-update step, so only grad-enabled
    training forwards should happen in between. In the hoopt loop the model arrives through
    ``bind(context)``.

    Args:
        params: an ``nn.Module`` (registered at once) or parameters / parameter groups.
        lr: learning rate. momentum: heavy-ball coefficient. weight_decay: L2 coefficient added to
        the preconditioned direction. stat_decay: EMA decay of the factors. damping: Tikhonov
        damping d. kl_clip: KL-clipping bound (None disables it). cov_update_every /
        inv_update_every: periods (steps) of the factor and inverse updates. fisher: "true" or
        "empirical". inverse_method: "inverse" or "eigen". damping_style: "factored" or
        "kronecker" (eigen only). seed: seed of the label-sampling generator (None: torch.initial_seed()).
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
        inverse_method: str = "inverse",
        damping_style: str = "factored",
        seed: int | None = None,
    ) -> None:
        validate_kfac_arguments(
            lr=lr, momentum=momentum, stat_decay=stat_decay, damping=damping, kl_clip=kl_clip,
            weight_decay=weight_decay, cov_update_every=cov_update_every, inv_update_every=inv_update_every,
            fisher=fisher, inverse_method=inverse_method, damping_style=damping_style, seed=seed,
        )
        model = params if isinstance(params, nn.Module) else None
        if model is not None:
            params = model.parameters()
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, damping=damping, stat_decay=stat_decay)
        super().__init__(params, defaults)
        self.kl_clip = kl_clip
        self.cov_update_every = int(cov_update_every)
        self.inv_update_every = int(inv_update_every)
        self.fisher = fisher
        self.inverse_method = inverse_method
        self.damping_style = damping_style
        self.seed = int(torch.initial_seed() if seed is None else seed) % (2**63)
        self._step_index = 0
        self._layers: list[nn.Module] = []
        self._layer_group: dict[nn.Module, int] = {}  # index, since load_state_dict replaces the dicts
        self._capture: FactorCapture | None = None
        self._pending_generator_state: torch.Tensor | None = None
        self._inverse_due = False
        self._warned_no_capture = False
        self._inversion_ms = 0.0
        self._kl_scale: torch.Tensor | None = None
        if model is not None:
            self.register_model(model)

    # ----------------------------------------------------------------- registration
    def bind(self, context: Any) -> None:
        """hoopt loop hook: register ``context.model``; non-classifiers use the empirical Fisher."""
        self.register_model(context.model, fisher=None if context.is_classifier else "empirical")

    def register_model(self, model: nn.Module, fisher: str | None = None) -> list[str]:
        """Hook the model's Linear/Conv2d layers whose parameters this optimizer owns; returns their names."""
        if self._capture is not None:
            self._capture.detach()
        group_of = {id(p): index for index, group in enumerate(self.param_groups) for p in group["params"]}
        self._layers, self._layer_group, names = [], {}, []
        for name, module in model.named_modules():
            if not is_supported_layer(module) or id(module.weight) not in group_of:
                continue
            group = group_of[id(module.weight)]
            if module.bias is not None and group_of.get(id(module.bias)) != group:
                continue  # bias frozen or in another group: leave the layer to the plain gradient
            self._layers.append(module)
            self._layer_group[module] = group
            names.append(name)
        if self._capture is not None:  # re-registration keeps the label stream where it is
            generator = self._capture.generator
        else:
            generator = torch.Generator().manual_seed(self.seed)  # CPU: portable state (capture.sample_labels)
            if self._pending_generator_state is not None:
                generator.set_state(self._pending_generator_state)
                self._pending_generator_state = None
        self._capture = FactorCapture(self._layers, fisher or self.fisher, generator)
        self._capture.attach(model)
        self._capture.armed = self._step_index % self.cov_update_every == 0
        self._inverse_due = any(self._has_factors(layer) and not self._has_inverse(layer) for layer in self._layers)
        return names

    @property
    def generator(self) -> torch.Generator | None:
        """The label-sampling generator (None until a model is registered)."""
        return None if self._capture is None else self._capture.generator

    # ----------------------------------------------------------------- step
    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        if self._capture is None:
            raise RuntimeError(
                "KFAC needs the model: construct it as KFAC(model, ...) or call opt.register_model(model) "
                "before the first step (the hoopt loop does this through bind)."
            )
        capture_step = self._step_index % self.cov_update_every == 0
        loss = None
        if closure is not None:
            self._capture.reset()
            self._capture.armed = capture_step
            try:
                with torch.enable_grad():
                    loss = closure()
            finally:
                self._capture.armed = False
        self._capture.armed = False
        captured = self._capture.take()
        if capture_step:
            if self._layers and not captured and not self._warned_no_capture:
                warnings.warn(
                    "K-FAC captured no factor statistics on a covariance step: the closure (or the forward before "
                    "step()) must run a grad-enabled forward of the registered model returning logits, then "
                    "backward; until it does, K-FAC layers take the plain gradient.",
                    stacklevel=2,
                )
                self._warned_no_capture = True
            self._update_factors(captured)
        if self._inverse_due or self._step_index % self.inv_update_every == 0:
            self.update_inverses()
        self._apply_update()
        self._step_index += 1
        self._capture.armed = closure is None and self._step_index % self.cov_update_every == 0
        return loss

    def _has_factors(self, layer: nn.Module) -> bool:
        return "kfac_A" in self.state[layer.weight]

    def _has_inverse(self, layer: nn.Module) -> bool:
        state = self.state[layer.weight]
        return "kfac_A_inv" in state or "kfac_A_vecs" in state

    def _update_factors(self, captured: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]]) -> None:
        for layer, (a_factor, g_factor) in captured.items():
            state, decay = self.state[layer.weight], self._group(layer)["stat_decay"]
            if "kfac_A" not in state:
                state["kfac_A"], state["kfac_G"] = a_factor, g_factor
                self._inverse_due = True
            else:
                state["kfac_A"].mul_(decay).add_(a_factor, alpha=1 - decay)
                state["kfac_G"].mul_(decay).add_(g_factor, alpha=1 - decay)

    def update_inverses(self) -> None:
        """Recompute the damped inverses (or eigendecompositions) from the current factors now, with the
        current damping; ``step`` calls it every ``inv_update_every`` steps."""
        start = _synchronized_clock(self._layers)
        for layer in self._layers:
            state = self.state[layer.weight]
            if "kfac_A" not in state:
                continue
            damping = self._group(layer)["damping"]
            if self.inverse_method == "inverse":
                state["kfac_A_inv"] = damped_inverse(state["kfac_A"], damping**0.5)
                state["kfac_G_inv"] = damped_inverse(state["kfac_G"], damping**0.5)
            else:
                a_values, state["kfac_A_vecs"] = eigendecomposition(state["kfac_A"])
                g_values, state["kfac_G_vecs"] = eigendecomposition(state["kfac_G"])
                state["kfac_scale"] = eigen_scale(g_values, a_values, damping, self.damping_style)
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
        if self.inverse_method == "inverse":
            return precondition_with_inverses(grad, state["kfac_G_inv"], state["kfac_A_inv"])
        return precondition_with_eigen(grad, state["kfac_G_vecs"], state["kfac_A_vecs"], state["kfac_scale"])

    def _apply_update(self) -> None:
        directions: dict[torch.Tensor, torch.Tensor] = {}
        step_dot_grad = None
        for layer in self._layers:
            grad = grad_matrix(layer)
            if grad is None or not self._has_inverse(layer):
                continue
            direction = self._precondition(layer, grad)
            term = torch.sum(direction * grad) * self._group(layer)["lr"] ** 2
            step_dot_grad = term if step_dot_grad is None else step_dot_grad + term
            directions[layer] = direction
        if directions and self.kl_clip is not None:
            self._kl_scale = kl_clip_scale(step_dot_grad, self.kl_clip)
            for direction in directions.values():
                direction.mul_(self._kl_scale)
        by_param: dict[torch.Tensor, torch.Tensor] = {}
        for layer, direction in directions.items():
            weight_part, bias_part = split_matrix(layer, direction)
            by_param[layer.weight] = weight_part
            if bias_part is not None:
                by_param[layer.bias] = bias_part
        for group in self.param_groups:
            momentum_sgd_update(group, by_param, self.state)

    # ----------------------------------------------------------------- protocol hooks
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

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        generator = self.generator
        state["kfac"] = {
            "step_index": self._step_index,
            "seed": self.seed,
            "generator": generator.get_state() if generator is not None else self._pending_generator_state,
        }
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        extras = state_dict.pop("kfac", None)
        super().load_state_dict(state_dict)
        if extras is None:
            return
        self._step_index = int(extras["step_index"])
        self.seed = int(extras["seed"])
        if extras["generator"] is not None:
            if self._capture is not None:
                self._capture.generator.set_state(extras["generator"])
            else:
                self._pending_generator_state = extras["generator"]
        if self._capture is not None:
            self._capture.armed = self._step_index % self.cov_update_every == 0
            self._inverse_due = any(self._has_factors(l) and not self._has_inverse(l) for l in self._layers)


def _synchronized_clock(layers: list[nn.Module]) -> float:
    """perf_counter after the device has finished queued work (only CUDA needs the sync)."""
    if layers and layers[0].weight.is_cuda:
        torch.cuda.synchronize(layers[0].weight.device)
    return time.perf_counter()
