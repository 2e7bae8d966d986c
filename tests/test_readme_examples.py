"""The plain-PyTorch examples in the README run as written and move the parameters."""

import os
import re

import pytest
import torch

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
EXAMPLES = re.findall(r"```python\n(.*?)```", open(README).read(), flags=re.S)


def test_the_readme_has_an_example_per_method():
    assert len(EXAMPLES) == 3
    assert [("NewtonSummary" in e, "LODO" in e, "KFAC" in e) for e in EXAMPLES] == [
        (True, False, False), (False, True, False), (False, False, True)]


def run_example(code):
    torch.manual_seed(0)
    namespace = {}
    exec(compile(code, "README example", "exec"), namespace)
    return [p.detach().clone() for p in namespace["model"].parameters()]


@pytest.mark.parametrize("index", range(3))
def test_readme_example_runs(index):
    trained = run_example(EXAMPLES[index])
    untouched = run_example(re.sub(r"range\(\d+\)", "range(0)", EXAMPLES[index]))  # same seed, no steps
    assert all(torch.isfinite(p).all() for p in trained)
    assert any(not torch.equal(a, b) for a, b in zip(trained, untouched))  # the steps moved the parameters
