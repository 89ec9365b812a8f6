"""Reference: training epochs of the 1200-1200 MLP (dropout 0.2/0.5, max-norm 3.5) with 2-px jitter,
SGD with momentum 0.9 and a cosine schedule, in plain PyTorch: the same work as
`distillery train --config configs/hinton2015/teacher.yaml`. By default each epoch ends, inside the
loop, with a test-set evaluation and a checkpoint, as the CLI does (--no-epoch-end: without).
Prints one JSON line: samples_per_second (training steps only, as distillery reports it: batch,
jitter, forward, backward, update), samples_per_second_with_epoch_end (the whole loop), seconds,
test_errors, threads."""
import argparse
import json
import time

import torch
import torch.nn.functional as F

from common import MLP, Timer, add_common_arguments, cosine_lr, epoch_end, load_mnist, random_shift, test_errors

parser = argparse.ArgumentParser()
add_common_arguments(parser)
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
train_seconds = 0.0
epoch_errors = []
timer = Timer()
for epoch in range(args.epochs):
    order = torch.randperm(len(y), generator=generator)
    for start in range(0, len(y), args.batch):
        step_start = time.perf_counter()
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
        train_seconds += time.perf_counter() - step_start
    if args.epoch_end:
        epoch_errors.append(epoch_end(model, optimizer, tx, ty, args.checkpoint))
seconds = timer.seconds()
errors = epoch_errors[-1] if epoch_errors else test_errors(model, tx, ty)
samples = len(y) * args.epochs
print(json.dumps({"samples_per_second": samples / train_seconds, "train_seconds": train_seconds,
                  "samples_per_second_with_epoch_end": samples / seconds, "seconds": seconds, "samples": samples,
                  "test_errors": errors, "epoch_errors": epoch_errors, "threads": torch.get_num_threads(),
                  "parameters": sum(p.numel() for p in model.parameters())}))
