"""``hoopt-bench <name> [options]``: benchmarks that measure in one process and print ratios.

loop     the shared loop's time per step against a bare hand-written PyTorch loop (LeNet, batch 100)
summary  NewtonSummary's summary refresh against the 2S+1-autograd-call reference procedure
epoch    NewtonSummary's time per training step against Adam's
lodo     LODO's time per step and memory against Adam's (PixelCNN generator, LeNet)
kfac     K-FAC's time per step against SGD's (MLP, LeNet, VGG-11')
competitors  Shampoo, SOAP, PSGD Kron, AdaHessian and Sophia: time per step against Adam's (MLP, LeNet)
tuning   how often a tuning study of each budget reaches the paper's value, over sampler seeds (Adam, Rosenbrock)

Every benchmark takes --device cpu|cuda|auto (auto: cuda when available) and flags for smaller sizes
(hoopt-bench <name> --help).
"""

import importlib
import sys

BENCHMARKS = ("loop", "summary", "epoch", "lodo", "kfac", "competitors", "tuning")


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in BENCHMARKS:
        print(__doc__.strip())
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nhoopt-bench: unknown benchmark '{argv[0]}'; choose one of: {', '.join(BENCHMARKS)}.",
                  file=sys.stderr)
            sys.exit(2)
        return
    importlib.import_module(f"hoopt.runner.benchmarks.{argv[0]}").run(argv[1:])


if __name__ == "__main__":
    main()
