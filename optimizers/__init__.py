"""hoopt's optimizers, one folder per method (newton_summary, lodo, kfac), each a ``torch.optim.Optimizer`` that
also follows the loop's contract of protocol.py; validation.py holds the argument checks they share."""
