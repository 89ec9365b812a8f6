"""Reference: co-distillation of 2 peers (Anil et al. 2018) in plain PyTorch, in one process: the
same work as `distillery codistill --config configs/codistill/mlp-2peers.yaml --peers 2`. Each peer
is an 800-800 MLP on its own half of the training images (SGD, momentum 0.9, cosine schedule, batch
100); after the burn-in its loss adds alpha x the KL at temperature T (times T^2) to a stale copy of
the other peer, refreshed every --exchange-every steps. Every epoch ends with a test evaluation of
each peer, as the CLI does.
Prints one JSON line: samples_per_second_with_epoch_end (training samples of all peers over the
whole loop), seconds, test_errors (mean over peers), peer_errors, parameters."""
import argparse
import copy
import json

import torch
import torch.nn.functional as F

from common import MLP, Timer, add_common_arguments, cosine_lr, load_mnist, test_errors

parser = argparse.ArgumentParser()
add_common_arguments(parser)
parser.add_argument("--peers", type=int, default=2)
parser.add_argument("--alpha", type=float, default=1.0)
parser.add_argument("--temperature", type=float, default=2.0)
parser.add_argument("--burn-in", type=int, default=200)
parser.add_argument("--exchange-every", type=int, default=100)
parser.set_defaults(jitter=0)
args = parser.parse_args()

torch.manual_seed(1)
x, y = load_mnist("train")
if args.limit:
    x, y = x[:args.limit], y[:args.limit]
tx, ty = load_mnist("test")
shard = len(y) // args.peers
shards = [(x[i * shard:(i + 1) * shard], y[i * shard:(i + 1) * shard]) for i in range(args.peers)]
peers = [MLP([800, 800]) for _ in range(args.peers)]
optimizers = [torch.optim.SGD(p.parameters(), lr=args.lr, momentum=0.9) for p in peers]
stale = [None] * args.peers
generators = [torch.Generator().manual_seed(100 + i) for i in range(args.peers)]
steps_per_epoch = (shard + args.batch - 1) // args.batch
total = steps_per_epoch * args.epochs
orders = [None] * args.peers
timer = Timer()
for step in range(total):
    if step % steps_per_epoch == 0:
        orders = [torch.randperm(shard, generator=g) for g in generators]
    start = (step % steps_per_epoch) * args.batch
    for i, (model, optimizer) in enumerate(zip(peers, optimizers)):
        idx = orders[i][start:start + args.batch]
        images, labels = shards[i][0][idx], shards[i][1][idx]
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(args.lr, step, total)
        optimizer.zero_grad()
        logits = model(images)
        loss = F.cross_entropy(logits, labels)
        teachers = [s for j, s in enumerate(stale) if j != i and s is not None]
        if step >= args.burn_in and teachers:
            t = args.temperature
            log_p = F.log_softmax(logits / t, 1)
            kl = 0.0
            for teacher in teachers:
                with torch.no_grad():
                    q = F.softmax(teacher(images) / t, 1)
                kl = kl + F.kl_div(log_p, q, reduction="batchmean") * t * t
            loss = loss + args.alpha * kl / len(teachers)
        loss.backward()
        optimizer.step()
    if (step + 1) % args.exchange_every == 0 and step + 1 < total:
        stale = [copy.deepcopy(p).eval() for p in peers]
        for s in stale:
            s.requires_grad_(False)
    if (step + 1) % steps_per_epoch == 0:
        peer_errors = [test_errors(p, tx, ty) for p in peers]
seconds = timer.seconds()
samples = total * args.batch * args.peers
print(json.dumps({"samples_per_second": None, "samples_per_second_with_epoch_end": samples / seconds, "seconds": seconds,
                  "samples": samples, "test_errors": sum(peer_errors) / len(peer_errors), "peer_errors": peer_errors,
                  "threads": torch.get_num_threads(), "parameters": sum(p.numel() for p in peers[0].parameters())}))
