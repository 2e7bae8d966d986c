"""VGG-11' of the NewtonSummary papers (arXiv:2312.03885, 2024 version, Section 6.2): VGG-11 convolutions
without normalisation, ELU, global average pooling and a single Linear(512, classes) head."""

import math

from torch import nn

from .init import paper_init_

VGG11_LAYOUT = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG(nn.Module):
    def __init__(self, input_shape=(3, 32, 32), num_classes=10, layout=VGG11_LAYOUT, sigma_w=math.sqrt(2)):
        super().__init__()
        layers, channels = [], input_shape[0]
        for item in layout:
            if item == "M":
                # pool(elu(z)) == elu(pool(z)) (ELU is increasing): pooling first applies ELU and its
                # derivatives to a quarter of the elements; parameter names do not change.
                layers.insert(len(layers) - 1, nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ELU()]
                channels = item
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        paper_init_(self, sigma_w)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


def vgg(input_shape=(3, 32, 32), num_classes=10, sigma_w=math.sqrt(2)):
    return VGG(input_shape, num_classes, VGG11_LAYOUT, sigma_w)
