"""Model registry: ``build_model(name, input_shape, num_classes, **kwargs)``.

The paper input shapes are the defaults; the runner passes the dataset's shape and class count."""

from .lenet import lenet
from .mlp import bigmlp, mlp, vbigmlp
from .pixelcnn import pixelcnn
from .resnet import resnet18
from .synthetic import noisy_quadratic, rosenbrock
from .vgg import vgg

MODELS = {
    "mlp": mlp,
    "lenet": lenet,
    "vgg": vgg,
    "bigmlp": bigmlp,
    "vbigmlp": vbigmlp,
    "resnet18": resnet18,
    "pixelcnn": pixelcnn,
    "noisy_quadratic": noisy_quadratic,
    "rosenbrock": rosenbrock,
}

# Models whose forward returns the loss itself (no dataset, no classes).
SYNTHETIC_MODELS = frozenset({"noisy_quadratic", "rosenbrock"})


def build_model(name, input_shape=None, num_classes=None, **kwargs):
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}'; choose one of: {', '.join(sorted(MODELS))}")
    if input_shape is not None:
        kwargs["input_shape"] = tuple(input_shape)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    return MODELS[name](**kwargs)
