"""hoopt: an experiment runner for higher-order and learned optimizers in PyTorch."""

__version__ = "0.1.0"
