"""Today's second-order competitors (Shampoo, SOAP, PSGD Kron, AdaHessian, Sophia) through hoopt's contract: each
converges on a small least-squares problem as its config builds it, trains through the runner on digits, and
resumes exactly. AdaHessian and Sophia get the gradient's graph from the closure (closure(create_graph=True))."""

import pytest
import torch

from conftest import compose, read_status, train
from hoopt.runner.training.build import build_optimizer

# (optimizer, overrides for this toy problem, final loss / initial loss must fall below)
CONVERGENCE = [
    ("shampoo", ["optimizer.lr=0.3"], 1e-5),
    ("soap", ["optimizer.lr=0.1"], 1e-4),
    ("kron", ["optimizer.lr=0.03"], 1e-3),
    ("adahessian", [], 1e-6),
    ("sophia", ["optimizer.lr=0.1", "optimizer.p=1.0"], 1e-4),  # p: the paper's clipping bound rho
]


class Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(5, 3))


@pytest.mark.parametrize("name,overrides,ratio", CONVERGENCE)
def test_each_competitor_solves_least_squares(name, overrides, ratio):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=g)
    y = x @ torch.randn(5, 3, generator=g)
    model = Linear()
    optimizer = build_optimizer(compose(f"optimizer={name}", *overrides), model, {})
    graphs = []

    def closure(create_graph=False):
        graphs.append(create_graph)
        optimizer.zero_grad(set_to_none=True)
        loss = ((x @ model.w - y) ** 2).mean()
        loss.backward(create_graph=create_graph)
        return loss

    initial = closure().item()
    for _ in range(300):
        optimizer.step(closure)
    final = ((x @ model.w - y) ** 2).mean().item()
    assert final < ratio * initial, (name, initial, final)
    # only the Hessian-vector methods ask for the graph, and they ask every step
    assert all(graphs[1:]) == (name in ("adahessian", "sophia")) and len(set(graphs[1:])) == 1


@pytest.mark.parametrize("name", ["shampoo", "soap", "kron", "adahessian", "sophia"])
def test_each_competitor_trains_on_digits_and_resumes_exactly(tmp_path, name):
    common = ["dataset=digits", f"optimizer={name}", "trainer.epochs=2", "trainer.batch_size=50", "seed=2",
              "+model.kwargs.hidden=[16]"]
    full, part = tmp_path / "full", tmp_path / "part"
    train(common, full)
    train([*common, "++trainer.interrupt_after_epoch=1"], part)
    train([*common, "resume=true"], part)
    assert read_status(full)["status"] == read_status(part)["status"] == "completed"
    a = torch.load(full / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(part / "checkpoint.pt", weights_only=False)["model"]
    for key in a:
        assert torch.isfinite(a[key]).all()
        assert torch.equal(a[key], b[key]), key
