"""Reference: distillation epochs in plain PyTorch: a 1200-1200 teacher (a distillery checkpoint,
read with torch.jit.load) and an 800-800 student, 2-px jitter, T = 20, soft targets only, SGD with
momentum 0.9 and a cosine schedule: the same work as `distillery distill --student
configs/hinton2015/student-distilled.yaml`, except that the teacher runs on every batch, as a Python
script would (distillery caches its outputs per (image, shift)). By default each epoch ends, inside
the loop, with a test-set evaluation and a checkpoint, as the CLI does.
Prints one JSON line: samples_per_second (training steps only, teacher included, as distillery
reports it), samples_per_second_with_epoch_end (the whole loop), seconds, test_errors, teacher_rows,
threads. --precision bf16: mixed precision, as `--set train.precision=bf16` in distillery."""
import argparse
import json
import time

import torch
import torch.nn.functional as F

from common import MLP, Timer, add_common_arguments, cosine_lr, epoch_end, load_mnist, random_shift, test_errors

parser = argparse.ArgumentParser()
add_common_arguments(parser)
parser.add_argument("--teacher", required=True)
parser.add_argument("--temperature", type=float, default=20.0)
parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                    help="bf16: torch.autocast('cpu', bfloat16) around the teacher's and the student's forward passes")
parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
parser.add_argument("--seed", type=int, default=1, help="seed of the student's initialisation, shuffling and jitter")
args = parser.parse_args()
bf16 = args.precision == "bf16"
if args.threads > 0:
    torch.set_num_threads(args.threads)


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


torch.manual_seed(args.seed)
x, y = load_mnist("train")
if args.limit:
    x, y = x[:args.limit], y[:args.limit]
tx, ty = load_mnist("test")
teacher = load_teacher(args.teacher)
teacher_errors = test_errors(teacher, tx, ty)
teacher.eval()  # test_errors leaves the model in training mode
student = MLP([800, 800])
optimizer = torch.optim.SGD(student.parameters(), lr=args.lr, momentum=0.9)
generator = torch.Generator().manual_seed(args.seed)
T = args.temperature
steps_per_epoch = (len(y) + args.batch - 1) // args.batch
total = steps_per_epoch * args.epochs
step = 0
train_seconds = 0.0
teacher_rows = 0
epoch_errors = []
timer = Timer()
for epoch in range(args.epochs):
    order = torch.randperm(len(y), generator=generator)
    for start in range(0, len(y), args.batch):
        step_start = time.perf_counter()
        idx = order[start:start + args.batch]
        images = random_shift(x[idx], args.jitter, generator)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            q = F.softmax(teacher(images).float() / T, dim=1)
        teacher_rows += len(idx)
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(args.lr, step, total)
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = student(images)
        log_p = F.log_softmax(logits.float() / T, dim=1)
        loss = F.kl_div(log_p, q, reduction="batchmean") * T * T
        loss.backward()
        optimizer.step()
        step += 1
        train_seconds += time.perf_counter() - step_start
    if args.epoch_end:
        epoch_errors.append(epoch_end(student, optimizer, tx, ty, args.checkpoint))
seconds = timer.seconds()
errors = epoch_errors[-1] if epoch_errors else test_errors(student, tx, ty)
samples = len(y) * args.epochs
print(json.dumps({"samples_per_second": samples / train_seconds, "train_seconds": train_seconds,
                  "samples_per_second_with_epoch_end": samples / seconds, "seconds": seconds, "samples": samples,
                  "test_errors": errors, "epoch_errors": epoch_errors, "teacher_errors": teacher_errors,
                  "teacher_rows": teacher_rows, "threads": torch.get_num_threads(),
                  "parameters": sum(p.numel() for p in student.parameters())}))
