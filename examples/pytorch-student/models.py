"""The two networks of the walk-through, as a PyTorch user writes them: a CNN teacher and a much
smaller CNN student, for 32x32 RGB images and 10 classes."""
import torch
from torch import nn


def block(inputs, outputs):
    return nn.Sequential(nn.Conv2d(inputs, outputs, 3, padding=1), nn.BatchNorm2d(outputs), nn.ReLU(), nn.MaxPool2d(2))


class Teacher(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.features = nn.Sequential(block(3, 32), block(32, 64), block(64, 128))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(128 * 4 * 4, 256), nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class Student(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.features = nn.Sequential(block(3, 16), block(16, 32))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 8 * 8, classes))

    def forward(self, x):
        return self.classifier(self.features(x))


def parameters(model):
    return sum(p.numel() for p in model.parameters())


def multiply_adds(model, shape=(1, 3, 32, 32)):
    """Multiply-adds per image of the convolutions and linear layers, counted with forward hooks."""
    total = [0]

    def count(layer, inputs, output):
        if isinstance(layer, nn.Conv2d):
            total[0] += output.numel() * layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, nn.Linear):
            total[0] += output.numel() * layer.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(shape))
    for hook in hooks:
        hook.remove()
    return total[0]
