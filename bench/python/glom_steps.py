"""Reference: GLOM training steps in plain PyTorch, the same model and objective as distillery's
nn::Glom and nn::glom_loss (measured on the C++ side by distillery_microbench's BM_GlomStep):
3 levels x 32 dims, 5 iterations, 4x4 patches with 4 pixels of context, bottom-up nets that see a
3x3 neighbourhood of the level below, top-down nets with sinusoidal positions, windowed consensus
attention (radii 1, 2, 3; beta 5, 10, 20; the column itself excluded), layer norm after every
update; loss: denoising of 25% hidden patches + 0.1 island regulariser + 0.1 InfoNCE + image-level
multi-label BCE on the locations' class scores max-pooled over the image. A step is forward, loss and backward (no optimizer), as in BM_GlomStep.
Prints one JSON line: samples_per_second (images), seconds_per_step, locations, parameters."""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

parser = argparse.ArgumentParser()
parser.add_argument("--side", type=int, default=56, help="image side (4x4 patches: (side / 4)^2 locations)")
parser.add_argument("--batch", type=int, default=8)
parser.add_argument("--steps", type=int, default=20)
parser.add_argument("--warmup", type=int, default=3)
args = parser.parse_args()

PATCH, CONTEXT, WINDOW, LEVELS, DIM, HIDDEN, ITERATIONS = 4, 4, 1, 3, 32, 64, 5
RADII, BETAS, FREQUENCIES, CLASSES = [1, 2, 3], [5.0, 10.0, 20.0], 4, 10


def two_layer(i, h, o):
    return nn.Sequential(nn.Linear(i, h), nn.GELU(), nn.Linear(h, o))


def positions(grid):
    coords = torch.arange(grid, dtype=torch.float32) / max(1, grid - 1)
    rows = coords.view(grid, 1).expand(grid, grid).reshape(-1, 1)
    cols = coords.view(1, grid).expand(grid, grid).reshape(-1, 1)
    scales = (2.0 ** torch.arange(FREQUENCIES, dtype=torch.float32) * math.pi).view(1, -1)
    r, c = rows * scales, cols * scales
    return torch.cat([r.sin(), r.cos(), c.sin(), c.cos()], 1)


def window_valid(h, w, r):
    side = 2 * r + 1
    rows = torch.arange(h * w) // w
    cols = torch.arange(h * w) % w
    offsets = torch.arange(-r, r + 1)
    rr = rows.view(-1, 1, 1) + offsets.view(1, side, 1)
    cc = cols.view(-1, 1, 1) + offsets.view(1, 1, side)
    return ((rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)).reshape(h * w, side * side)


def consensus(x, h, w, radius, beta, valid):
    """Windowed attention, one shifted view per offset (as distillery's consensus_attention_reference)."""
    b, n, d = x.shape
    side, k = 2 * radius + 1, (2 * radius + 1) ** 2
    normed = F.normalize(x, dim=-1, eps=1e-8)
    grid = x.transpose(1, 2).reshape(b, d, h, w)
    grid_normed = normed.transpose(1, 2).reshape(b, d, h, w)
    padded = F.pad(grid, (radius,) * 4)
    padded_normed = F.pad(grid_normed, (radius,) * 4)
    logits = torch.stack([(grid_normed * padded_normed[:, :, dr:dr + h, dc:dc + w]).sum(1).reshape(b, n)
                          for dr in range(side) for dc in range(side)], -1) * beta
    excluded = ~valid
    excluded[:, k // 2] = True
    weights = logits.masked_fill(excluded.unsqueeze(0), float("-inf")).softmax(-1)
    weights_grid = weights.transpose(1, 2).reshape(b, k, 1, h, w)
    total = None
    j = 0
    for dr in range(side):
        for dc in range(side):
            if j != k // 2:
                term = weights_grid[:, j] * padded[:, :, dr:dr + h, dc:dc + w]
                total = term if total is None else total + term
            j += 1
    return total.reshape(b, d, n).transpose(1, 2)


class Glom(nn.Module):
    def __init__(self, side):
        super().__init__()
        self.grid = side // PATCH
        window = PATCH + 2 * CONTEXT
        self.embed = nn.Linear(window * window, DIM)
        self.decode = nn.Linear(DIM, PATCH * PATCH)
        self.classify = nn.Linear(DIM, CLASSES)
        neighbours = (2 * WINDOW + 1) ** 2
        self.bottom_up = nn.ModuleList(two_layer(DIM * neighbours, HIDDEN, DIM) for _ in range(LEVELS - 1))
        self.top_down = nn.ModuleList(two_layer(DIM + 4 * FREQUENCIES, HIDDEN, DIM) for _ in range(LEVELS - 1))
        self.register_buffer("positions", positions(self.grid))
        present = torch.ones(LEVELS, 4)
        present[LEVELS - 1, 2] = 0
        self.register_buffer("mix", present / present.sum(1, keepdim=True))  # equal weights over the terms a level has
        self.valid = [window_valid(self.grid, self.grid, r) for r in RADII]

    def patches(self, images):
        return F.unfold(images, PATCH, stride=PATCH).transpose(1, 2)

    def bottom_up_input(self, below):
        b, n, d = below.shape
        g = self.grid
        return F.unfold(below.transpose(1, 2).reshape(b, d, g, g), 2 * WINDOW + 1, padding=WINDOW).transpose(1, 2)

    def forward(self, images, patch_mask):
        b, g = images.size(0), self.grid
        hidden = patch_mask.view(b, 1, g, 1, g, 1).expand(b, 1, g, PATCH, g, PATCH).reshape(images.shape)
        visible = images.masked_fill(hidden, 0.0)
        windows = F.unfold(visible, PATCH + 2 * CONTEXT, stride=PATCH, padding=CONTEXT).transpose(1, 2)
        inp = self.embed(windows)
        pos = self.positions.unsqueeze(0).expand(b, -1, -1)
        x = [inp]
        for l in range(1, LEVELS):
            x.append(self.bottom_up[l - 1](self.bottom_up_input(x[l - 1])))
        x = [F.layer_norm(v, (DIM,)) for v in x]
        for _ in range(ITERATIONS):
            bu, td, cons, nxt = [], [], [], []
            for l in range(LEVELS):
                bu.append(inp if l == 0 else self.bottom_up[l - 1](self.bottom_up_input(x[l - 1])))
                td.append(self.top_down[l](torch.cat([x[l + 1], pos], -1)) if l + 1 < LEVELS else torch.zeros_like(x[l]))
                cons.append(consensus(x[l], g, g, RADII[l], BETAS[l], self.valid[l]))
                m = self.mix[l]
                v = m[0] * x[l] + m[1] * bu[l] + m[3] * cons[l]
                if l + 1 < LEVELS:
                    v = v + m[2] * td[l]
                nxt.append(F.layer_norm(v, (DIM,)))
            x = nxt
        logits = self.classify(x[-1])
        return (torch.stack(x, 2), torch.stack(bu, 2), torch.stack(td, 2), torch.stack(cons, 2), self.decode(x[0]),
                logits.amax(1))  # max pooling over locations, distillery's default glom.pooling


def glom_loss(model, images, labels, mask_fraction=0.25, island=0.1, contrast=0.1, samples=8, temperature=0.1):
    b, n = images.size(0), model.grid ** 2
    patch_mask = torch.rand(b, n) < mask_fraction
    levels, bu, td, cons, recon, image_logits = model(images, patch_mask)
    err = (recon - model.patches(images)).pow(2).mean(-1)
    m = patch_mask.float()
    denoise = (err * m).sum() / m.sum() if patch_mask.any() else err.mean()
    target = cons[:, :, 1:].detach()
    island_loss = (1 - F.cosine_similarity(bu[:, :, 1:], target, dim=-1)).mean()
    island_loss = 0.5 * (island_loss + (1 - F.cosine_similarity(td[:, :, 1:LEVELS - 1], target[:, :, :LEVELS - 2], dim=-1)).mean())
    s = min(samples, n)
    picks = torch.rand(b, n).argsort(1)[:, :s]
    owner = torch.arange(b).repeat_interleave(s)
    same_image = (owner.unsqueeze(0) == owner.unsqueeze(1)) & ~torch.eye(b * s, dtype=torch.bool)
    index = picks.unsqueeze(-1).expand(b, s, DIM)
    total = 0.0
    for l in range(1, LEVELS):
        emb = levels[:, :, l].gather(1, index).reshape(b * s, DIM)
        key = cons[:, :, l].detach().gather(1, index).reshape(b * s, DIM)
        logits = F.normalize(emb, dim=-1) @ F.normalize(key, dim=-1).t() / temperature
        total = total + F.cross_entropy(logits.masked_fill(same_image, float("-inf")), torch.arange(b * s))
    label = F.binary_cross_entropy_with_logits(image_logits, labels)
    return denoise + island * island_loss + contrast * total / (LEVELS - 1) + label


torch.manual_seed(0)
model = Glom(args.side)
images = torch.rand(args.batch, 1, args.side, args.side)
labels = torch.zeros(args.batch, CLASSES)
labels[:, 3] = 1.0
for step in range(args.warmup + args.steps):
    if step == args.warmup:
        start = time.perf_counter()
    loss = glom_loss(model, images, labels)
    loss.backward()
    model.zero_grad()
seconds = time.perf_counter() - start
print(json.dumps({"samples_per_second": args.batch * args.steps / seconds, "seconds_per_step": seconds / args.steps,
                  "locations": model.grid ** 2, "threads": torch.get_num_threads(),
                  "parameters": sum(p.numel() for p in model.parameters())}))
