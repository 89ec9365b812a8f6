"""Loads an exported model as anyone would, with torch.jit.load, and compares its logits with the
ones distillery computed on the same images (run with Debian's /usr/bin/python3).

usage: check_torchscript_export.py MODEL.ts.pt DATA.pt
DATA.pt is a tensor file (torch.save dict) with "images" (float [N, C, H, W]) and "logits"
(distillery's, [N, K]). Prints the largest difference; exits 1 if it exceeds 1e-5.
"""
import sys

import torch

model = torch.jit.load(sys.argv[1])
data = torch.load(sys.argv[2])
model.eval()
with torch.no_grad():
    out = model(data["images"])
logits = out["logits"] if isinstance(out, dict) else out
difference = (logits - data["logits"]).abs().max().item()
print(f"largest difference {difference:.3g} over {tuple(logits.shape)}")
sys.exit(0 if difference <= 1e-5 else 1)
