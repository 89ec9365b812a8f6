"""Reference: one training epoch of the 1200-1200 MLP with 2-px jitter, in plain PyTorch.
Prints one JSON line: samples_per_second (training loop only) and test_errors."""
import argparse
import json

import torch
import torch.nn.functional as F

from common import MLP, Timer, cosine_lr, load_mnist, random_shift, test_errors

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=1)
parser.add_argument("--batch", type=int, default=100)
parser.add_argument("--lr", type=float, default=0.1)
parser.add_argument("--jitter", type=int, default=2)
parser.add_argument("--limit", type=int, default=0)
args = parser.parse_args()

torch.manual_seed(1)
x, y = load_mnist("train")
if args.limit:
    x, y = x[:args.limit], y[:args.limit]
tx, ty = load_mnist("test")
model = MLP([1200, 1200], 0.2, 0.5, 3.5)
optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
generator = torch.Generator().manual_seed(1)
steps_per_epoch = (len(y) + args.batch - 1) // args.batch
total = steps_per_epoch * args.epochs
step = 0
timer = Timer()
for epoch in range(args.epochs):
    order = torch.randperm(len(y), generator=generator)
    for start in range(0, len(y), args.batch):
        idx = order[start:start + args.batch]
        images = random_shift(x[idx], args.jitter, generator)
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(args.lr, step, total)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(images), y[idx])
        loss.backward()
        optimizer.step()
        model.apply_max_norm()
        step += 1
seconds = timer.seconds()
print(json.dumps({"samples_per_second": len(y) * args.epochs / seconds, "seconds": seconds,
                  "test_errors": test_errors(model, tx, ty), "threads": torch.get_num_threads()}))
