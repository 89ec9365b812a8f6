"""Reference: training epochs of a CapsNet (Sabour, Frosst & Hinton 2017) in plain PyTorch, the same
network, loss and loop as `distillery train --config configs/capsnet/quick.yaml` (or paper.yaml with
--conv 256 --types 32): Conv 9x9 ReLU -> PrimaryCaps (9x9 stride 2, squash) -> DigitCaps 10 x 16D with
per-pair W_ij and dynamic routing (batched, gradients through every iteration) -> masked decoder;
margin loss + 0.0005 x sum-of-squares reconstruction; Adam with a cosine schedule; no jitter by default
(quick.yaml), --jitter 2 as paper.yaml.
Each epoch ends with a test evaluation (as the CLI does, unless --no-epoch-end).
Prints one JSON line: samples_per_second (training steps only), samples_per_second_with_epoch_end,
seconds, test_errors, threads, parameters."""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from common import Timer, add_common_arguments, cosine_lr, epoch_end, load_mnist, random_shift

parser = argparse.ArgumentParser()
add_common_arguments(parser)
parser.add_argument("--conv", type=int, default=128, help="channels of the first convolution (paper: 256)")
parser.add_argument("--types", type=int, default=16, help="primary capsule types (paper: 32)")
parser.add_argument("--iterations", type=int, default=3)
parser.add_argument("--recon", type=float, default=0.0005)
parser.set_defaults(batch=32, lr=0.002, jitter=0)  # configs/capsnet/quick.yaml
args = parser.parse_args()


def squash(s, dim=-1, eps=1e-8):
    squared = (s * s).sum(dim, keepdim=True)
    return s * (squared / (1 + squared)) / torch.sqrt(squared + eps)


class CapsNet(nn.Module):
    def __init__(self, conv, types, primary_dim=8, classes=10, class_dim=16, iterations=3):
        super().__init__()
        self.types, self.primary_dim, self.classes, self.class_dim, self.iterations = types, primary_dim, classes, class_dim, iterations
        self.conv = nn.Conv2d(1, conv, 9)
        self.primary = nn.Conv2d(conv, types * primary_dim, 9, stride=2)
        num_in = types * 6 * 6
        self.weight = nn.Parameter(torch.randn(num_in, primary_dim, classes * class_dim) * 0.01)
        self.decoder = nn.Sequential(nn.Linear(classes * class_dim, 512), nn.ReLU(), nn.Linear(512, 1024), nn.ReLU(),
                                     nn.Linear(1024, 784), nn.Sigmoid())

    def forward(self, x, mask=None):
        u = self.primary(F.relu(self.conv(x)))
        b, _, h, w = u.shape
        u = squash(u.view(b, self.types, self.primary_dim, h, w).permute(0, 1, 3, 4, 2).reshape(b, -1, self.primary_dim))
        # u_hat laid out [B, J, I, D] (as distillery does): both routing sums are batched matmuls.
        u_hat = torch.bmm(u.transpose(0, 1), self.weight).view(-1, b, self.classes, self.class_dim).permute(1, 2, 0, 3).contiguous()
        logits = torch.zeros(b, self.classes, u_hat.size(2))
        for r in range(self.iterations):
            c = logits.softmax(1)
            v = squash(torch.matmul(c.unsqueeze(2), u_hat).squeeze(2))
            if r + 1 < self.iterations:
                logits = logits + torch.matmul(u_hat, v.unsqueeze(-1)).squeeze(-1)
        lengths = torch.sqrt((v * v).sum(-1) + 1e-12)
        recon = None
        if mask is not None:
            recon = self.decoder((v * F.one_hot(mask, self.classes).unsqueeze(-1).float()).flatten(1)).view(-1, 1, 28, 28)
        return lengths, recon


def margin_loss(lengths, labels):
    t = F.one_hot(labels, lengths.size(1)).float()
    return (t * F.relu(0.9 - lengths) ** 2 + 0.5 * (1 - t) * F.relu(lengths - 0.1) ** 2).sum(1).mean()


class Classifier(nn.Module):  # logits for epoch_end's evaluation: the lengths' argmax
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)[0]


torch.manual_seed(1)
x, y = load_mnist("train")
if args.limit:
    x, y = x[:args.limit], y[:args.limit]
tx, ty = load_mnist("test")
model = CapsNet(args.conv, args.types, iterations=args.iterations)
optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
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
        images, labels = random_shift(x[idx], args.jitter, generator), y[idx]
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(args.lr, step, total)
        optimizer.zero_grad()
        lengths, recon = model(images, labels if args.recon > 0 else None)
        loss = margin_loss(lengths, labels)
        if args.recon > 0:
            loss = loss + args.recon * ((recon - images) ** 2).flatten(1).sum(1).mean()
        loss.backward()
        optimizer.step()
        step += 1
        train_seconds += time.perf_counter() - step_start
    if args.epoch_end:
        epoch_errors.append(epoch_end(Classifier(model), optimizer, tx, ty, args.checkpoint))
seconds = timer.seconds()
samples = len(y) * args.epochs
print(json.dumps({"samples_per_second": samples / train_seconds, "train_seconds": train_seconds,
                  "samples_per_second_with_epoch_end": samples / seconds, "seconds": seconds, "samples": samples,
                  "test_errors": epoch_errors[-1] if epoch_errors else None, "epoch_errors": epoch_errors,
                  "threads": torch.get_num_threads(), "parameters": sum(p.numel() for p in model.parameters())}))
