"""LeNet-5 as in the NewtonSummary papers (arXiv:2312.03885, 2024 version, Section 6.2): tanh, max-pooling, no
normalisation."""

from torch import nn

from .init import paper_init_


class LeNet(nn.Module):
    def __init__(self, input_shape=(3, 32, 32), num_classes=10, sigma_w=1.0):
        super().__init__()
        channels, height, width = input_shape
        self.c1 = nn.Conv2d(channels, 6, 5)
        self.c2 = nn.Conv2d(6, 16, 5)
        flat = 16 * ((((height - 4) // 2) - 4) // 2) * ((((width - 4) // 2) - 4) // 2)
        self.f1 = nn.Linear(flat, 120)
        self.f2 = nn.Linear(120, 84)
        self.f3 = nn.Linear(84, num_classes)
        self.act = nn.Tanh()
        self.pool = nn.MaxPool2d(2)
        paper_init_(self, sigma_w)

    def forward(self, x):
        # pool(tanh(z)) == tanh(pool(z)) exactly (tanh is increasing, so it keeps the argmax). Pooling first
        # runs tanh and every order of its derivatives on a quarter of the elements: NewtonSummary's
        # third-order backward passes spend most of their time on these elementwise ops.
        x = self.act(self.pool(self.c1(x)))
        x = self.act(self.pool(self.c2(x)))
        x = x.flatten(1)
        x = self.act(self.f1(x))
        x = self.act(self.f2(x))
        return self.f3(x)


def lenet(input_shape=(3, 32, 32), num_classes=10, sigma_w=1.0):
    return LeNet(input_shape, num_classes, sigma_w)
