"""Tasks: what is trained on and how it is measured (base.Task), dataset-backed or synthetic."""

from .base import Task
from .classification import ClassificationTask
from .synthetic import SyntheticTask

__all__ = ["ClassificationTask", "SyntheticTask", "Task"]
