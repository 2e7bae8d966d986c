"""ResNet-18, CIFAR variant (LODO paper, arXiv:2210.06171, Section 5.4): torchvision's ResNet-18 with a 3x3
stride-1 stem and no max-pool, 11,173,962 parameters for 10 classes. Default torchvision initialisation."""

from torch import nn


def resnet18(input_shape=(3, 32, 32), num_classes=10):
    # imported here: torchvision takes ~2 s to import, and only this model needs it
    from torchvision.models import resnet18 as torchvision_resnet18

    model = torchvision_resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(input_shape[0], 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model
