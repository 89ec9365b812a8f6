#!/usr/bin/python3
"""Loading your own images: distillery against what a PyTorch user runs, on the same folder.

One pass over the Fashion-MNIST colour folder (70,000 32x32 RGB PNGs, scripts/image_folder.py
--colour) into uint8 tensors, each side in its own process, repeated (median):
  - torchvision: ImageFolder(transform=PILToTensor()) + DataLoader(batch_size=256, num_workers=2);
  - distillery, first decode: `distillery data` with an empty cache folder (decodes on every core,
    then writes the decoded cache);
  - distillery, cached reload: the same command again (reads the cache).
Peak memory is each process's peak resident set less that of the same command on a 10-image
folder, against the uint8 size of the images.
Targets: first decode >= 1.5x torchvision's images/s; cached reload >= 20x distillery's first
decode; memory within 10% of the uint8 size.

  /usr/bin/python3 bench/datasets.py [--folder DIR] [--repeats N] [--json docs/results/datasets.json]
"""
import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from run import git_revision, machine_description  # noqa: E402

TORCHVISION_PASS = r"""
import sys, time, torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms
started = time.perf_counter()
count, parts = 0, []
for split in sys.argv[1:]:
    folder = datasets.ImageFolder(split, transform=transforms.PILToTensor())
    for images, labels in DataLoader(folder, batch_size=256, num_workers=2):
        parts.append(images)
        count += images.shape[0]
images = torch.cat(parts)
print(count, time.perf_counter() - started, images.numel())
"""


def measured(command, env=None):
    """Runs a command; returns (stdout, peak resident MiB of the process)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"failed ({status}): {' '.join(command)}")
    return out, usage.ru_maxrss / 1024


def torchvision_pass(root):
    out, peak = measured([sys.executable, "-c", TORCHVISION_PASS, f"{root}/train", f"{root}/test"])
    count, seconds, _ = out.split()
    return int(count), float(seconds), peak


def distillery_pass(binary, root, data_dir):
    out, peak = measured([binary, "data", "--json", "--set", "data.dataset=folder", "--set", f"data.path={root}",
                          "--set", f"data.dir={data_dir}", "--set", "run.log_every_seconds=1000"])
    summary = json.loads(out)
    count = sum(part["images"] for part in summary["splits"].values())
    mib = sum(part["mib"] for part in summary["splits"].values())
    return count, summary["seconds"], peak, mib


def tiny_copy(root, into):
    """The first 5 images of two classes of train/ and test/: a baseline for resident memory."""
    for split in ("train", "test"):
        for name in sorted(os.listdir(f"{root}/{split}"))[:2]:
            os.makedirs(f"{into}/{split}/{name}")
            for image in sorted(os.listdir(f"{root}/{split}/{name}"))[:5]:
                shutil.copy(f"{root}/{split}/{name}/{image}", f"{into}/{split}/{name}/{image}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", default=os.path.join(ROOT, "data", "fashion-colour"), help="made if missing")
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=os.path.join(ROOT, "docs", "results", "datasets.json"))
    args = parser.parse_args()
    binary = os.path.join(args.build, "distillery")
    started = time.time()
    if not os.path.isdir(os.path.join(args.folder, "train")):
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "image_folder.py"), "--dataset", "fashion-mnist", "--colour",
                        "--out", args.folder], check=True)
    # Every file read once first, so that neither side pays for the disk.
    subprocess.run(f"find '{args.folder}' -type f -exec cat {{}} + > /dev/null", shell=True, check=True)

    with tempfile.TemporaryDirectory() as work:
        tiny = os.path.join(work, "tiny")
        tiny_copy(args.folder, tiny)
        base_python = torchvision_pass(tiny)[2]
        base_ours = distillery_pass(binary, tiny, os.path.join(work, "tiny-cache"))[2]
        python, first, cached = [], [], []
        for repeat in range(args.repeats):
            python.append(torchvision_pass(args.folder))
            cache = os.path.join(work, f"cache-{repeat}")
            first.append(distillery_pass(binary, args.folder, cache))
            cached.append(distillery_pass(binary, args.folder, cache))
            print(f"repeat {repeat + 1}: torchvision {python[-1][1]:.1f} s, first decode {first[-1][1]:.1f} s, "
                  f"cached {cached[-1][1]:.2f} s", flush=True)

    images = first[0][0]
    uint8_mib = first[0][3]
    rate = lambda runs: statistics.median(run[0] / run[1] for run in runs)  # noqa: E731
    python_rate, first_rate, cached_rate = rate(python), rate(first), rate(cached)
    memory = lambda runs, base: statistics.median(run[2] for run in runs) - base  # noqa: E731
    rows = [
        ("torchvision-images-per-s", "torchvision ImageFolder + DataLoader(num_workers=2): images/s", python_rate, "images/s"),
        ("first-decode-images-per-s", "distillery, first decode: images/s", first_rate, "images/s"),
        ("cached-reload-images-per-s", "distillery, cached reload: images/s", cached_rate, "images/s"),
        ("first-decode-vs-torchvision", "first decode / torchvision (target >= 1.5)", first_rate / python_rate, "x"),
        ("cached-vs-first-decode", "cached reload / first decode (target >= 20)", cached_rate / first_rate, "x"),
        ("uint8-mib", f"the {images} images as uint8", uint8_mib, "MiB"),
        ("first-decode-memory", "distillery, first decode: peak resident memory above a 10-image run / uint8 size (target <= 1.10)",
         memory(first, base_ours) / uint8_mib, "x"),
        ("cached-reload-memory", "distillery, cached reload: the same (target <= 1.10)", memory(cached, base_ours) / uint8_mib, "x"),
        ("torchvision-memory", "torchvision: the same, for reference", memory(python, base_python) / uint8_mib, "x"),
    ]
    command = "/usr/bin/python3 bench/datasets.py" + (f" --repeats {args.repeats}" if args.repeats != 3 else "")
    report = {
        "experiment": "datasets",
        "title": "Loading an image folder: distillery against torchvision",
        "profile": f"Fashion-MNIST colour folder, {images} images of 3x32x32, {args.repeats} repeats (median)",
        "command": command,
        "git_revision": git_revision(),
        "machine": machine_description(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seconds": round(time.time() - started),
        "rows": [{"id": i, "what": what, "paper": None, "ours": round(value) if unit == "images/s" else round(value, 3), "unit": unit}
                 for i, what, value, unit in rows],
        "notes": [
            "Each pass is its own process; the files were read once before, so the page cache holds them for both sides.",
            "torchvision decodes with PIL in 2 DataLoader workers; distillery with stb_image on every core, into one preallocated uint8 tensor.",
            "The cache is a tensor file (torch.load reads it) in the data folder's image-cache/, keyed by the files' paths, sizes and times.",
        ],
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    for row in report["rows"]:
        print(f"{row['what']}: {row['ours']} {row['unit']}")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
