"""K-FAC, the NewtonSummary papers' baseline (docs/methods/kfac.md): hoopt's own ``KFAC`` and an adapter to
kfac-pytorch when it is installed."""

from .kfac_pytorch_adapter import INSTALL_HINT, KFACPytorchAdapter, KFACPytorchUnavailableError
from .optimizer import KFAC

__all__ = ["KFAC", "KFACPytorchAdapter", "KFACPytorchUnavailableError", "INSTALL_HINT"]
