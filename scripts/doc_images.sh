#!/usr/bin/env bash
# Makes the pictures of README.md under docs/img/:
#   seven.png       the first MNIST test digit (what `distillery predict` is shown on)
#   report.png      a screenshot of runs/student-distilled/report.html (the README's five-minute start)
#   glom-scene.png  a 7 and a 2 from MNIST's test set pasted so that they touch, dark on light
#   glom-parse.png  `distillery islands` of a GLOM model over that scene
# Usage: scripts/doc_images.sh GLOM_MODEL.pt   (from the repository root, after the five-minute start
# and a GLOM study run, e.g. runs/glom-quick/model-seed1.pt)
set -euo pipefail
model=${1:?usage: scripts/doc_images.sh GLOM_MODEL.pt}
bin=${DISTILLERY:-build/distillery}
data=${DISTILLERY_DATA:-data}/mnist
out=docs/img
mkdir -p "$out"

/usr/bin/python3 - "$data/t10k-images-idx3-ubyte" "$out" <<'EOF'
import struct, sys, zlib

images, out = sys.argv[1], sys.argv[2]
raw = open(images, "rb").read()
count, rows, cols = struct.unpack(">III", raw[4:16])
digit = lambda i: [list(raw[16 + i * 784 + r * 28:16 + i * 784 + r * 28 + 28]) for r in range(28)]

def write_png(path, pixels):  # 8-bit gray
    height, width = len(pixels), len(pixels[0])
    body = b"".join(b"\0" + bytes(row) for row in pixels)
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    open(path, "wb").write(png + chunk(b"IDAT", zlib.compress(body, 9)) + chunk(b"IEND", b""))

write_png(f"{out}/seven.png", digit(0))
# Test digits 0 (a 7) and 1 (a 2), each scaled 2x, on a 112 x 112 canvas; the 2's left edge
# overlaps the 7's right edge by a few pixels, so that their strokes touch.
canvas = [[0] * 112 for _ in range(112)]
for index, (top, left) in ((0, (28, 6)), (1, (28, 50))):
    d = digit(index)
    for r in range(56):
        for c in range(56):
            v = d[r // 2][c // 2]
            canvas[top + r][left + c] = max(canvas[top + r][left + c], v)
write_png(f"{out}/glom-scene.png", [[255 - v for v in row] for row in canvas])
EOF

"$bin" islands --model "$model" -k 2 --out "$out" "$out/glom-scene.png"
mv "$out/glom-scene-islands.png" "$out/glom-parse.png"

browser=$(command -v chromium || command -v chromium-browser)
"$browser" --headless=new --no-sandbox --disable-gpu --no-first-run --hide-scrollbars \
  --force-device-scale-factor=0.6 --window-size=1100,1300 --screenshot="$out/report.png" \
  "file://$PWD/runs/student-distilled/report.html" >/dev/null 2>&1
ls -l "$out"
