"""The LODO paper's baselines as its authors ran them, each a plain ``torch.optim.Optimizer`` written from its
update formula (docs/methods/lodo.md, "The baselines"): Yogi without bias correction, RMSprop with epsilon
inside the square root, and LARS with per-layer trust ratios and a polynomially decayed global learning rate."""

from .lars import LARS
from .rmsprop import RMSprop
from .yogi import Yogi

__all__ = ["LARS", "RMSprop", "Yogi"]
