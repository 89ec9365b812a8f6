"""Shared pieces of the plain-PyTorch reference scripts: MNIST loading, batched jitter, MLP.

These are what a user would write in Python for the same work as distillery; they use the same
algorithms (batched shifts, the same MLP), so a speed ratio compares front ends over the same
LibTorch kernels (Debian's python3-torch is the same torch version as libtorch-dev).
"""
import argparse
import math
import os
import struct
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_idx(path):
    with open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_mnist(split):
    root = os.path.join(os.environ.get("DISTILLERY_DATA", "data"), "mnist")
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(os.path.join(root, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(os.path.join(root, f"{prefix}-labels-idx1-ubyte"))
    x = torch.from_numpy(images.copy()).float().div_(255).unsqueeze(1)
    y = torch.from_numpy(labels.copy()).long()
    return x, y


def random_shift(images, max_shift, generator):
    """Batched jitter: pad, then gather each image's window (tensor operations, as one writes it in PyTorch)."""
    if max_shift == 0:
        return images
    b, c, h, w = images.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (b, 2), generator=generator)
    padded = F.pad(images, (max_shift,) * 4)
    rows = torch.arange(h).unsqueeze(0) + (max_shift - shifts[:, :1])
    cols = torch.arange(w).unsqueeze(0) + (max_shift - shifts[:, 1:])
    picked = padded.gather(2, rows.view(b, 1, h, 1).expand(b, c, h, w + 2 * max_shift))
    return picked.gather(3, cols.view(b, 1, 1, w).expand(b, c, h, w))


class MLP(nn.Module):
    def __init__(self, hidden, dropout_input=0.0, dropout_hidden=0.0, max_norm=0.0):
        super().__init__()
        sizes = [784] + list(hidden) + [10]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.dropout_input, self.dropout_hidden, self.max_norm = dropout_input, dropout_hidden, max_norm

    def forward(self, x):
        x = F.dropout(x.flatten(1), self.dropout_input, self.training)
        for layer in self.layers[:-1]:
            x = F.dropout(F.relu(layer(x)), self.dropout_hidden, self.training)
        return self.layers[-1](x)

    @torch.no_grad()
    def apply_max_norm(self):
        if self.max_norm > 0:
            for layer in self.layers[:-1]:
                layer.weight.copy_(torch.renorm(layer.weight, 2, 0, self.max_norm))


def cosine_lr(base, step, total):
    return base * 0.5 * (1 + math.cos(math.pi * step / total))


def test_errors(model, x, y):
    model.eval()
    with torch.no_grad():
        errors = sum(int((model(x[i:i + 1000]).argmax(1) != y[i:i + 1000]).sum()) for i in range(0, len(y), 1000))
    model.train()
    return errors


def epoch_end(model, optimizer, tx, ty, checkpoint):
    """What `distillery train` / `distill` do at the end of every epoch, inside their timed loop:
    evaluate on the test set and write a checkpoint (model and optimizer state, written to a
    temporary file and renamed). Returns the test errors."""
    errors = test_errors(model, tx, ty)
    if checkpoint:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, checkpoint + ".tmp")
        os.replace(checkpoint + ".tmp", checkpoint)
    return errors


def add_common_arguments(parser):
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--jitter", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N training images (0: all)")
    parser.add_argument("--epoch-end", action=argparse.BooleanOptionalAction, default=True,
                        help="evaluate and checkpoint at each epoch end, as the distillery CLI does (in seconds, "
                             "not in the steps-only samples_per_second)")
    parser.add_argument("--checkpoint", default="", help="checkpoint file written at each epoch end (default: none)")


class Timer:
    def __init__(self):
        self.start = time.perf_counter()

    def seconds(self):
        return time.perf_counter() - self.start
