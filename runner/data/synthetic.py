"""Batch streams of the synthetic objectives: what each step's loss is evaluated on.

The noisy quadratic bowl's centre does a random walk, c <- c + sigma * N(0, I) before every evaluation
(SPEC 2.1); Rosenbrock is deterministic. Stream state lives in ``state_dict`` so a resumed run is exact."""

import torch


class RandomWalkCentre:
    def __init__(self, dim: int, noise_std: float, generator: torch.Generator, device: torch.device):
        self.centre = torch.zeros(dim, device=device)
        self.noise_std = noise_std
        self.generator = generator

    def next(self):
        noise = torch.randn(self.centre.shape, generator=self.generator, device=self.centre.device)
        self.centre = self.centre + self.noise_std * noise
        return self.centre

    def sample_like(self, generator: torch.Generator):
        """A draw of the next centre from another RNG stream, without moving the walk (a 'separate
        minibatch' for methods that evaluate the loss on their own batch)."""
        noise = torch.randn(self.centre.shape, generator=generator, device=self.centre.device)
        return self.centre + self.noise_std * noise

    def state_dict(self):
        return {"centre": self.centre.clone()}

    def load_state_dict(self, state):
        self.centre = state["centre"].to(self.centre.device)


class ConstantStream:
    """For deterministic objectives: every batch is empty."""

    def next(self):
        return None

    def sample_like(self, generator):
        return None

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def stream_for(model: torch.nn.Module, generator: torch.Generator, device: torch.device):
    if hasattr(model, "hessian"):
        return RandomWalkCentre(model.hessian.shape[0], model.noise_std, generator, device)
    return ConstantStream()
