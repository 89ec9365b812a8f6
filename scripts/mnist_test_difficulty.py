#!/usr/bin/env python3
"""How hard the first N MNIST test digits are against the whole test set, for a classifier that has
nothing to do with distillery: ridge regression onto one-hot labels from 2,000 random ReLU features
of the pixels (seed 0). Prints its error rate on the first N digits, on all, and on each half.

Usage: scripts/mnist_test_difficulty.py [data/mnist] [N=2000]
"""
import os
import sys

import numpy as np


def read_idx(path, offset, shape):
    with open(path, "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset).reshape(shape)


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else "data/mnist"
    first = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    train_x = read_idx(os.path.join(folder, "train-images-idx3-ubyte"), 16, (-1, 784)) / 255.0
    train_y = read_idx(os.path.join(folder, "train-labels-idx1-ubyte"), 8, (-1,))
    test_x = read_idx(os.path.join(folder, "t10k-images-idx3-ubyte"), 16, (-1, 784)) / 255.0
    test_y = read_idx(os.path.join(folder, "t10k-labels-idx1-ubyte"), 8, (-1,))
    projection = np.random.default_rng(0).standard_normal((784, 2000)) / 28
    features = lambda x: np.maximum(x @ projection, 0)
    h = features(train_x)
    weights = np.linalg.solve(h.T @ h + 0.1 * np.eye(h.shape[1]), h.T @ np.eye(10)[train_y])
    wrong = (features(test_x) @ weights).argmax(1) != test_y
    half = len(test_y) // 2
    print(f"error: first {first} {wrong[:first].mean():.1%}, all {wrong.mean():.1%}, "
          f"first half {wrong[:half].mean():.1%}, second half {wrong[half:].mean():.1%}")


if __name__ == "__main__":
    main()
