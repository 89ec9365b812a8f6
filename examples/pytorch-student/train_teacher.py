"""Step 1 of the walk-through, in PyTorch: trains the teacher on the labeled training folder, and
scripts the teacher (trained) and the student (untrained) for distillery.

  /usr/bin/python3 train_teacher.py --folder FOLDER --out WORK [--epochs N]
writes WORK/teacher.pt and WORK/student.pt (TorchScript)."""
import argparse
import os
import time

import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from models import Student, Teacher, multiply_adds, parameters


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", required=True, help="an image folder with train/ and test/")
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    train = datasets.ImageFolder(os.path.join(args.folder, "train"), transform=transforms.ToTensor())
    loader = DataLoader(train, batch_size=64, shuffle=True, num_workers=2)
    teacher = Teacher(len(train.classes))
    optimizer = torch.optim.Adam(teacher.parameters(), lr=1e-3)
    started = time.time()
    for epoch in range(args.epochs):
        teacher.train()
        for images, labels in loader:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(teacher(images), labels).backward()
            optimizer.step()
        print(f"teacher epoch {epoch + 1}/{args.epochs} done ({time.time() - started:.0f} s)", flush=True)
    torch.jit.script(teacher.eval()).save(os.path.join(args.out, "teacher.pt"))
    torch.manual_seed(args.seed)
    student = Student(len(train.classes))
    torch.jit.script(student).save(os.path.join(args.out, "student.pt"))
    print(f"teacher: {parameters(teacher):,} parameters, {multiply_adds(teacher):,} multiply-adds per image")
    print(f"student: {parameters(student):,} parameters, {multiply_adds(student):,} multiply-adds per image")
    print(f"wrote {args.out}/teacher.pt (trained) and {args.out}/student.pt (untrained)")


if __name__ == "__main__":
    main()
