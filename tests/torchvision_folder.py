#!/usr/bin/env python3
"""Loads an image folder as a PyTorch user would (torchvision's ImageFolder with Resize, CenterCrop)
and writes what it got, for the C++ test that compares distillery's loader with it.

Usage: torchvision_folder.py ROOT OUT_DIR RESIZE CROP
Writes OUT_DIR/classes.txt, files.txt (one per line), labels.txt, shape.txt and images.bin (uint8 N*C*H*W);
stats.txt, the per-channel means then standard deviations a user would give transforms.Normalize;
tensors.pt, the same images as a tensor file (torch.save of a dict); and, given a tensor file
written by distillery as a fifth argument, loaded.txt: its shape, pixel sum, labels and classes.
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
scaled = images.double() / 255
mean, std = scaled.mean(dim=(0, 2, 3)), scaled.transpose(0, 1).flatten(1).std(dim=1, unbiased=False)
with open(f"{out}/stats.txt", "w") as f:
    f.write(" ".join(f"{v:.9f}" for v in mean.tolist() + std.tolist()))
torch.save({"images": images, "labels": torch.tensor([label for _, label in folder.samples]), "classes": folder.classes},
           f"{out}/tensors.pt")
torch.save({"images": images}, f"{out}/one_entry.pt")  # what LibTorch 1.13 cannot read: the error must say so
torch.save([images, images], f"{out}/list.pt")
if len(sys.argv) > 5:
    theirs = torch.load(sys.argv[5])
    with open(f"{out}/loaded.txt", "w", encoding="utf-8") as f:
        f.write(" ".join(str(size) for size in theirs["images"].shape) + "\n")
        f.write(str(int(theirs["images"].long().sum())) + "\n")
        f.write(" ".join(str(int(label)) for label in theirs["labels"]) + "\n")
        f.write("\n".join(theirs["classes"]))
