"""Writes small TorchScript teachers for tests/test_distill.cpp (run with Debian's /usr/bin/python3).

usage: make_script_teacher.py OUT_DIR

OUT_DIR/scripted10.pt   torch.jit.script of Flatten + Linear(784, 10), seed 0
OUT_DIR/traced5.pt      torch.jit.trace of Flatten + Linear(784, 5), seed 1
OUT_DIR/expected10.txt  logits [2, 10] of scripted10.pt on the fixed input below, one row per line
The fixed input [2, 1, 28, 28] is arange(2 * 784) / (2 * 784); the C++ test builds the same one.
"""
import os
import sys

import torch


def fixed_input():
    n = 2 * 784
    return (torch.arange(n, dtype=torch.float32) / n).reshape(2, 1, 28, 28)


def model(num_classes, seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, num_classes)).eval()


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    ten = torch.jit.script(model(10, 0))
    ten.save(os.path.join(out, "scripted10.pt"))
    five = torch.jit.trace(model(5, 1), fixed_input())
    five.save(os.path.join(out, "traced5.pt"))
    with torch.no_grad():
        logits = ten(fixed_input())
    with open(os.path.join(out, "expected10.txt"), "w") as f:
        for row in logits.tolist():
            f.write(" ".join(repr(v) for v in row) + "\n")


if __name__ == "__main__":
    main()
