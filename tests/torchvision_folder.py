#!/usr/bin/env python3
"""Loads an image folder as a PyTorch user would (torchvision's ImageFolder with Resize, CenterCrop)
and writes what it got, for the C++ test that compares distillery's loader with it.

Usage: torchvision_folder.py ROOT OUT_DIR RESIZE CROP
Writes OUT_DIR/classes.txt, files.txt (one per line), labels.txt, shape.txt and images.bin (uint8 N*C*H*W).
"""
import sys

import torch
from torchvision import datasets, transforms

root, out, resize, crop = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
folder = datasets.ImageFolder(root, transform=transforms.Compose(
    [transforms.Resize(resize), transforms.CenterCrop(crop), transforms.PILToTensor()]))
images = torch.stack([folder[i][0] for i in range(len(folder))])
with open(f"{out}/classes.txt", "w", encoding="utf-8") as f:
    f.write("\n".join(folder.classes))
with open(f"{out}/files.txt", "w", encoding="utf-8") as f:
    f.write("\n".join(path for path, _ in folder.samples))
with open(f"{out}/labels.txt", "w") as f:
    f.write(" ".join(str(label) for _, label in folder.samples))
with open(f"{out}/shape.txt", "w") as f:
    f.write(" ".join(str(size) for size in images.shape))
with open(f"{out}/images.bin", "wb") as f:
    f.write(images.contiguous().numpy().tobytes())
