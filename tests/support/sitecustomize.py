"""Loaded only by the tests' subprocesses (PYTHONPATH): the tiny CIFAR-10 files the tests write cannot match
torchvision's fixed MD5 sums, so the checksum check is switched off here, in the tests alone."""

import os

if os.environ.get("HOOPT_TEST_SKIP_CIFAR_MD5") == "1":
    import torchvision.datasets.cifar as cifar

    cifar.check_integrity = lambda *args, **kwargs: True
