"""Reference: distillation epochs in plain PyTorch: a 1200-1200 teacher (a distillery checkpoint,
read with torch.jit.load) and an 800-800 student, 2-px jitter, T = 20, soft targets only.
The teacher runs on every batch, as a Python script would. Prints one JSON line."""
import argparse
import json

import torch
import torch.nn.functional as F

from common import MLP, Timer, cosine_lr, load_mnist, random_shift, test_errors

parser = argparse.ArgumentParser()
parser.add_argument("--teacher", required=True)
parser.add_argument("--epochs", type=int, default=1)
parser.add_argument("--batch", type=int, default=100)
parser.add_argument("--lr", type=float, default=0.1)
parser.add_argument("--jitter", type=int, default=2)
parser.add_argument("--temperature", type=float, default=20.0)
args = parser.parse_args()


def load_teacher(path):
    archive = torch.jit.load(path)
    meta = json.loads(archive.meta)
    teacher = MLP(meta["spec"]["hidden"])
    stored = dict(archive.model.named_parameters())
    with torch.no_grad():
        for name, p in teacher.named_parameters():
            # layers.0.weight <-> fc1/weight
            index, kind = name.split(".")[1:]
            p.copy_(stored[f"fc{int(index) + 1}/{kind}"])
    return teacher.eval()


torch.manual_seed(1)
x, y = load_mnist("train")
tx, ty = load_mnist("test")
teacher = load_teacher(args.teacher)
student = MLP([800, 800])
optimizer = torch.optim.SGD(student.parameters(), lr=args.lr, momentum=0.9)
generator = torch.Generator().manual_seed(1)
T = args.temperature
steps_per_epoch = (len(y) + args.batch - 1) // args.batch
total = steps_per_epoch * args.epochs
step = 0
timer = Timer()
for epoch in range(args.epochs):
    order = torch.randperm(len(y), generator=generator)
    for start in range(0, len(y), args.batch):
        idx = order[start:start + args.batch]
        images = random_shift(x[idx], args.jitter, generator)
        with torch.no_grad():
            q = F.softmax(teacher(images) / T, dim=1)
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(args.lr, step, total)
        optimizer.zero_grad()
        log_p = F.log_softmax(student(images) / T, dim=1)
        loss = F.kl_div(log_p, q, reduction="batchmean") * T * T
        loss.backward()
        optimizer.step()
        step += 1
seconds = timer.seconds()
print(json.dumps({"samples_per_second": len(y) * args.epochs / seconds, "seconds": seconds,
                  "test_errors": test_errors(student, tx, ty), "threads": torch.get_num_threads()}))
