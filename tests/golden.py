"""Golden trajectories recorded by running the published code: read at test time from shared/fixtures/ beside the
repository checkout (CI has it there), never copied into the repository."""

import json
import os

import pytest
import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "..", "shared", "fixtures")


def load_golden(name: str) -> dict:
    """The fixture ``<name>.json``; the test is skipped, with where it is expected, when it is absent."""
    path = os.path.join(FIXTURES, f"{name}.json")
    if not os.path.exists(path):
        pytest.skip(f"the golden file {name}.json is expected in shared/fixtures/ beside the repository checkout "
                    f"(../shared/fixtures/ from the repository root)")
    with open(path) as handle:
        return json.load(handle)


class GoldenMLP(nn.Module):
    """Both fixtures' model: l3(tanh(l2(tanh(l1(x))))), 64-32-16-10, named l1, l2, l3 like the recorded parameters."""

    def __init__(self):
        super().__init__()
        self.l1, self.l2, self.l3 = nn.Linear(64, 32), nn.Linear(32, 16), nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l3(torch.tanh(self.l2(torch.tanh(self.l1(x)))))
