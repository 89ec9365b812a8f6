"""Step 3 of the walk-through, in PyTorch again: loads the student distillery trained
(student.ts.pt: plain TorchScript, no distillery needed) and the teacher, and scores both on the
labeled test folder. With --result (the distill run's result.json), it also checks that Python's
score of the student is the one distillery measured (exit 1 if they differ by more than an image).

  /usr/bin/python3 evaluate.py --folder FOLDER --student RUN/student.ts.pt --teacher WORK/teacher.pt [--result RUN/result.json]"""
import argparse
import json
import os
import sys

import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms


def accuracy(model, loader):
    correct = total = 0
    with torch.no_grad():
        for images, labels in loader:
            correct += (model(images).argmax(1) == labels).sum().item()
            total += labels.numel()
    return correct / total, total


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", required=True)
    parser.add_argument("--student", required=True)
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--result", help="the distill run's result.json")
    args = parser.parse_args()
    test = datasets.ImageFolder(os.path.join(args.folder, "test"), transform=transforms.ToTensor())
    loader = DataLoader(test, batch_size=256, num_workers=2)
    for name, path in (("teacher", args.teacher), ("student", args.student)):
        model = torch.jit.load(path).eval()
        score, total = accuracy(model, loader)
        print(f"{name}: test accuracy {100 * score:.2f}% on {total} images ({path})")
    if args.result:
        measured = json.load(open(args.result))["test"]
        agree = abs(measured["accuracy"] - score) * total <= 1
        print(f"the distill run measured {100 * measured['accuracy']:.2f}% on {measured['count']} images: "
              f"{'the same' if agree else 'NOT the same'}")
        sys.exit(0 if agree else 1)


if __name__ == "__main__":
    main()
