"""Writes TorchScript students, as a PyTorch user writes them, for tests/test_distill.cpp (run with
Debian's /usr/bin/python3).

usage: make_script_student.py OUT_DIR

OUT_DIR/cnn.pt           torch.jit.script of a small CNN with batch norm and dropout: [B, 1, 28, 28] -> [B, 10]
OUT_DIR/features.pt      the same CNN returning {"logits": ..., "stage1": ..., "stage2": ...}
OUT_DIR/flat.pt          returns [B] instead of [B, K]
OUT_DIR/seven.pt         returns [B, 7]: a class count the data does not have
OUT_DIR/frozen.pt        its only layer frozen (requires_grad False): nothing to train
OUT_DIR/rgb.pt           takes 3 channels: fails on 1-channel images
"""
import os
import sys
from typing import Dict

import torch
from torch import nn


class SmallCNN(nn.Module):
    def __init__(self, in_channels=1, classes=10):
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2))
        self.stage2 = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(16 * 7 * 7, classes))

    def forward(self, x):
        return self.head(self.stage2(self.stage1(x)))


class SmallCNNWithFeatures(SmallCNN):
    def forward(self, x) -> Dict[str, torch.Tensor]:
        stage1 = self.stage1(x)
        stage2 = self.stage2(stage1)
        return {"logits": self.head(stage2), "stage1": stage1, "stage2": stage2}


class Flat(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(784, 1)

    def forward(self, x):
        return self.linear(x.flatten(1)).squeeze(1)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    torch.jit.script(SmallCNN()).save(os.path.join(out, "cnn.pt"))
    torch.manual_seed(0)
    torch.jit.script(SmallCNNWithFeatures()).save(os.path.join(out, "features.pt"))
    torch.jit.script(Flat()).save(os.path.join(out, "flat.pt"))
    torch.jit.script(nn.Sequential(nn.Flatten(), nn.Linear(784, 7))).save(os.path.join(out, "seven.pt"))
    frozen = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    for p in frozen.parameters():
        p.requires_grad_(False)
    torch.jit.script(frozen).save(os.path.join(out, "frozen.pt"))
    torch.jit.script(SmallCNN(in_channels=3)).save(os.path.join(out, "rgb.pt"))


if __name__ == "__main__":
    main()
