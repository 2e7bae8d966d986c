"""A synthetic task: an objective whose forward returns the loss (models/synthetic.py), evaluated on a stream of
values. The noisy quadratic bowl's centre does a random walk, c <- c + sigma N(0, I) before every evaluation (the
LODO paper, Sec. 5.1; docs/methods/lodo.md); Rosenbrock is deterministic and its stream is empty. The stream's
state is in the task's state_dict, so a resumed run sees the same values."""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import torch

from ...models.synthetic import NoisyQuadraticBowl
from .base import l2_penalty


class RandomWalkCentre:
    def __init__(self, dim: int, noise_std: float, generator: torch.Generator, device: torch.device):
        self.centre = torch.zeros(dim, device=device)
        self.noise_std, self.generator = noise_std, generator

    def next(self) -> torch.Tensor:
        noise = torch.randn(self.centre.shape, generator=self.generator, device=self.centre.device)
        self.centre = self.centre + self.noise_std * noise
        return self.centre

    def sample_like(self, generator: torch.Generator) -> torch.Tensor:
        """A draw of the next centre from another RNG stream, without moving the walk (a 'separate minibatch'
        for methods that evaluate the loss on batches of their own)."""
        noise = torch.randn(self.centre.shape, generator=generator, device=self.centre.device)
        return self.centre + self.noise_std * noise

    def state_dict(self) -> dict:
        return {"centre": self.centre.clone()}

    def load_state_dict(self, state: Mapping) -> None:
        self.centre = state["centre"].to(self.centre.device)


class ConstantStream:
    """A deterministic objective: every batch is empty."""

    def next(self):
        return None

    def sample_like(self, generator: torch.Generator):
        return None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: Mapping) -> None:
        pass


class SyntheticLossSampler:
    """protocol.LossSampler over the objective's stream."""

    def __init__(self, task: "SyntheticTask", model: torch.nn.Module):
        self.task, self.model = task, model

    def sample(self, batch_size: int, generator: torch.Generator):
        return self.task.stream.sample_like(generator)

    def loss(self, params: Mapping[str, torch.Tensor], batch) -> torch.Tensor:
        value = torch.func.functional_call(self.model, dict(params), (batch,), strict=False)
        if self.task.l2:
            value = value + l2_penalty({**dict(self.model.named_parameters()), **params}.values(), self.task.l2)
        return value


class SyntheticTask:
    def __init__(self, objective: torch.nn.Module, generator: torch.Generator, device: torch.device,
                 steps_per_epoch: int, l2: float = 0.0):
        self.objective, self.generator, self.l2 = objective, generator, l2
        self.bowl = objective if isinstance(objective, NoisyQuadraticBowl) else None
        if self.bowl is not None:
            self.stream = RandomWalkCentre(self.bowl.hessian.shape[0], self.bowl.noise_std, generator, device)
        else:
            self.stream = ConstantStream()
        self.steps_per_epoch = steps_per_epoch
        self.description = "its synthetic stream"

    def epoch_batches(self) -> Iterator:
        for _ in range(self.steps_per_epoch):
            yield self.stream.next()

    def loss(self, model: torch.nn.Module, batch) -> torch.Tensor:
        return model(batch) + l2_penalty(model.parameters(), self.l2)

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """``eval/loss``: the loss the current point has in expectation over the next evaluation; for the noisy
        bowl that is the loss at the current centre plus the irreducible 1/2 sigma^2 tr H."""
        optimum = model.optimum_loss
        expected = float(model(self.stream.centre)) + optimum if self.bowl is not None else float(model(None))
        return {"eval/loss": expected, "eval/optimum": optimum, "eval/gap": expected - optimum}

    def final_evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        return {}

    def dependencies(self, model: torch.nn.Module) -> dict[str, Any]:
        return {"model": model, "loss_sampler": SyntheticLossSampler(self, model), "classifier": False,
                "hessian": None if self.bowl is None else self.bowl.hessian}

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "stream": self.stream.state_dict()}

    def load_state_dict(self, state: Mapping) -> None:
        self.generator.set_state(state["generator"])
        self.stream.load_state_dict(state["stream"])
