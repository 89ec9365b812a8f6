#!/usr/bin/env python3
"""Writes MNIST or Fashion-MNIST as an image folder in torchvision's ImageFolder layout, to try
distillery's image-folder datasets on (nothing it writes belongs in the repository).

  OUT/train/<class>/<index>.png   and   OUT/test/<class>/<index>.png
  OUT/unlabeled/<index>.png       with --unlabeled N: training images without their class folders

--colour writes 32x32 RGB images: each image tinted with a random colour and placed at a random
offset on a tinted, textured background (seeded), so that a model must use its channels and tell
object from background. Without it, the 28x28 gray originals.

  /usr/bin/python3 scripts/image_folder.py --dataset fashion-mnist --out /tmp/fashion --colour
"""
import argparse
import gzip
import os
import struct
import zlib

import torch

CLASSES = {
    "mnist": ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"],
    "fashion-mnist": ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
}


def read_idx(folders, stem):
    for folder in folders:
        for name in (stem, stem + ".gz"):
            path = os.path.join(folder, name)
            if os.path.exists(path):
                raw = (gzip.open if name.endswith(".gz") else open)(path, "rb").read()
                dims = raw[3]
                shape = struct.unpack(">" + "I" * dims, raw[4:4 + 4 * dims])
                return torch.frombuffer(bytearray(raw[4 + 4 * dims:]), dtype=torch.uint8).reshape(shape)
    raise SystemExit(f"{stem}: not found in {', '.join(folders)} (MNIST: make setup; Fashion-MNIST: apt-get install dataset-fashion-mnist)")


def png_bytes(pixels):
    """uint8 [H, W] (gray) or [H, W, 3] (RGB) as PNG."""
    height, width = pixels.shape[0], pixels.shape[1]
    colour = 2 if pixels.dim() == 3 else 0
    rows = pixels.reshape(height, -1).numpy().tobytes()
    stride = len(rows) // height
    body = b"".join(b"\0" + rows[r * stride:(r + 1) * stride] for r in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(body, 6)) + chunk(b"IEND", b"")


def colourise(images, generator):
    """[N, 28, 28] uint8 -> [N, 32, 32, 3] uint8: a tinted object on a tinted texture."""
    n = images.shape[0]
    alpha = images.float().div(255).unsqueeze(-1)                                   # [N, 28, 28, 1]
    tint = torch.rand(n, 1, 1, 3, generator=generator) * 0.8 + 0.2
    noise = torch.rand(n, 1, 16, 16, generator=generator)
    texture = torch.nn.functional.interpolate(noise, size=(32, 32), mode="bilinear", align_corners=False)
    background = (texture.permute(0, 2, 3, 1) * 0.5 + 0.1) * (torch.rand(n, 1, 1, 3, generator=generator) * 0.8 + 0.2)
    out = background.clone()
    offsets = torch.randint(0, 5, (n, 2), generator=generator)
    for i in range(n):
        top, left = int(offsets[i, 0]), int(offsets[i, 1])
        patch = out[i, top:top + 28, left:left + 28]
        out[i, top:top + 28, left:left + 28] = patch * (1 - alpha[i]) + tint[i] * alpha[i]
    return out.mul(255).round().clamp(0, 255).to(torch.uint8)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(CLASSES), default="mnist")
    parser.add_argument("--out", required=True)
    parser.add_argument("--colour", action="store_true", help="32x32 RGB, tinted, on textured backgrounds")
    parser.add_argument("--train", type=int, default=0, help="training images (0: all)")
    parser.add_argument("--test", type=int, default=0, help="test images (0: all)")
    parser.add_argument("--unlabeled", type=int, default=0, help="also write this many training images, after the labeled ones, with no class")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data-dir", default=os.environ.get("DISTILLERY_DATA", "data"))
    args = parser.parse_args()

    folders = [os.path.join(args.data_dir, args.dataset)]
    if args.dataset == "fashion-mnist":
        folders.append("/usr/share/datasets/fashion-mnist")
    generator = torch.Generator().manual_seed(args.seed)
    classes = CLASSES[args.dataset]
    written = 0
    for split, prefix, limit in (("train", "train", args.train), ("test", "t10k", args.test)):
        images = read_idx(folders, f"{prefix}-images-idx3-ubyte")
        labels = read_idx(folders, f"{prefix}-labels-idx1-ubyte")
        count = limit or images.shape[0]
        extra = args.unlabeled if split == "train" else 0
        if count + extra > images.shape[0]:
            raise SystemExit(f"{split}: {count} + {extra} images asked for, the dataset has {images.shape[0]}")
        pixels = colourise(images[:count + extra], generator) if args.colour else images[:count + extra]
        for i in range(count + extra):
            folder = os.path.join(args.out, split, classes[int(labels[i])]) if i < count else os.path.join(args.out, "unlabeled")
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, f"{i:05d}.png"), "wb") as f:
                f.write(png_bytes(pixels[i]))
            written += 1
    print(f"wrote {written} images under {args.out}")


if __name__ == "__main__":
    main()
