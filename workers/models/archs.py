"""The architectures lpstudy ships (registered on import)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from workers.models.registry import CIFAR10_MEAN, CIFAR10_STD, register_arch


class MadryMNIST(nn.Module):
    """Madry et al. (2018) MNIST CNN: conv5x5/32, pool, conv5x5/64, pool, FC 1024, FC 10."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.fc1 = nn.Linear(64 * 7 * 7, 1024)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


class LeNet5Advertorch(nn.Module):
    """advertorch's LeNet5 (conv3x3/32, pool, conv3x3/64, pool, FC 200, FC 10); key names match its state_dict."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.linear1 = nn.Linear(7 * 7 * 64, 200)
        self.linear2 = nn.Linear(200, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.linear1(torch.flatten(x, 1)))
        return self.linear2(x)


class CarliniWagnerMNIST(nn.Module):
    """Carlini & Wagner (2017) MNIST CNN: 2x conv3x3/32, pool, 2x conv3x3/64, pool, FC 200, FC 200, FC 10.

    Unpadded convolutions, four conv layers and two hidden FC layers: deliberately different from Madry's CNN,
    so it can serve as an independent judge.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.Conv2d(64, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(64 * 4 * 4, 200), nn.ReLU(), nn.Linear(200, 200), nn.ReLU(), nn.Linear(200, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class PreActBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """Pre-activation ResNet (He et al. 2016) for 32x32 inputs, as used by Wong et al. (2020)."""

    def __init__(self, num_blocks: tuple[int, ...] = (2, 2, 2, 2), width: int = 64, num_classes: int = 10) -> None:
        super().__init__()
        self.in_planes = width
        self.conv1 = nn.Conv2d(3, width, 3, stride=1, padding=1, bias=False)
        layers = []
        for i, n in enumerate(num_blocks):
            layers.append(self._make_layer(width * 2**i, n, stride=1 if i == 0 else 2))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.bn = nn.BatchNorm2d(width * 8)
        self.linear = nn.Linear(width * 8, num_classes)

    def _make_layer(self, planes: int, n: int, stride: int) -> nn.Sequential:
        blocks = []
        for s in [stride] + [1] * (n - 1):
            blocks.append(PreActBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.relu(self.bn(out))
        out = F.adaptive_avg_pool2d(out, 1)
        return self.linear(torch.flatten(out, 1))


@register_arch("madry_mnist", "mnist")
def madry_mnist() -> nn.Module:
    """Madry et al. MNIST CNN (3.27M parameters); inputs in [0, 1], no normalisation."""
    return MadryMNIST()


@register_arch("lenet5_advertorch", "mnist")
def lenet5_advertorch() -> nn.Module:
    """advertorch LeNet5 (mnist_lenet5_advtrained.pt); inputs in [0, 1], no normalisation."""
    return LeNet5Advertorch()


@register_arch("cw_mnist", "mnist")
def cw_mnist() -> nn.Module:
    """Carlini & Wagner MNIST CNN (0.31M parameters); inputs in [0, 1], no normalisation."""
    return CarliniWagnerMNIST()


@register_arch("preact_resnet18", "cifar10", mean=CIFAR10_MEAN, std=CIFAR10_STD)
def preact_resnet18() -> nn.Module:
    """PreAct ResNet-18, full width 64 (11.2M parameters, 22 MB in fp16)."""
    return PreActResNet((2, 2, 2, 2), width=64)


@register_arch("preact_resnet18_w32", "cifar10", mean=CIFAR10_MEAN, std=CIFAR10_STD)
def preact_resnet18_w32() -> nn.Module:
    """PreAct ResNet-18 at half width 32-64-128-256 (2.8M parameters, 5.6 MB in fp16)."""
    return PreActResNet((2, 2, 2, 2), width=32)
