#!/usr/bin/env bash
# Your own images, measured: Fashion-MNIST written as a 32x32 RGB image folder (tinted garments on
# tinted, textured backgrounds: scripts/image_folder.py --colour), a ConvNet teacher trained on its
# 60,000 labeled training images over several seeds, and a 30x smaller student trained two ways for
# the same steps: on the labels, and distilled from the teacher on the same images without them
# (data.labels: none: no label is read). Writes docs/results/images.json.
# Usage: scripts/fashion_colour.sh [RUNS_DIR] [SEEDS] [EPOCHS]   (defaults: runs-fashion-colour 3 2;
# about 15 minutes on 2 cores)
set -euo pipefail
runs=${1:-runs-fashion-colour}
seeds=${2:-3}
epochs=${3:-2}
bin=${DISTILLERY:-build/distillery}
folder=${FASHION_COLOUR:-data/fashion-colour}
start=$(date +%s.%N)
[ -d "$folder/train" ] || /usr/bin/python3 scripts/image_folder.py --dataset fashion-mnist --colour --out "$folder"

d() { echo "+ distillery $*"; "$bin" "$@" --set run.dir="$runs" --set train.epochs="$epochs" --set run.log_every_seconds=60; }
for seed in $(seq 1 "$seeds"); do
  d train --config configs/images/teacher.yaml --set data.path="$folder" --set train.seed="$seed" --set name="teacher-$seed"
  d train --config configs/images/student.yaml --set data.labels=auto --set data.path="$folder" --set train.seed="$seed" \
    --set name="student-labels-$seed"
  d distill --teacher "$runs/teacher-$seed/checkpoint.pt" --student configs/images/student.yaml --set data.path="$folder/train" \
    --set data.test_path="$folder/test" --set train.seed="$seed" --set name="student-distilled-$seed"
done

/usr/bin/python3 - "$runs" "$seeds" "$epochs" "$start" "$0 $*" <<'PY'
import datetime, json, os, statistics, subprocess, sys, time
runs, seeds, epochs, start, command = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5].strip()
sys.path.insert(0, "bench")
from run import git_revision, machine_description
def errors(name):
    return [json.load(open(os.path.join(runs, f"{name}-{s}", "result.json")))["test"] for s in range(1, seeds + 1)]
rows, summary = [], {}
for name, what in (("teacher", f"ConvNet teacher (1.1 M parameters) on the 60,000 labeled training images, {epochs} epochs"),
                   ("student-labels", f"ConvNet student (30x smaller) on their labels, {epochs} epochs"),
                   ("student-distilled", f"the same student distilled from the teacher on the same images without labels, {epochs} epochs")):
    tests = errors(name)
    counts = [t["errors"] for t in tests]
    summary[name] = counts
    sd = statistics.stdev(counts) if len(counts) > 1 else 0.0
    rows.append({"id": f"{name}-errors", "what": f"{what}: test errors, mean of {seeds} seeds (sd {sd:.1f}; each: {', '.join(map(str, counts))})",
                 "paper": None, "ours": round(statistics.mean(counts), 1), "unit": f"errors of {tests[0]['count']:,}"})
    accuracies = [100 * t["accuracy"] for t in tests]
    sd_points = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
    rows.append({"id": f"{name}-accuracy", "what": f"{what}: test accuracy, mean of {seeds} seeds (sd {sd_points:.2f} points)",
                 "paper": None, "ours": round(statistics.mean(accuracies), 2), "unit": "%"})
gain = statistics.mean(summary["student-labels"]) - statistics.mean(summary["student-distilled"])
spread = max(statistics.stdev(summary[name]) if seeds > 1 else 0.0 for name in ("student-labels", "student-distilled"))
record = {"experiment": "images", "title": "Your own images: Fashion-MNIST as a 32x32 RGB image folder",
          "profile": f"{seeds} seeds, {epochs} epochs each", "command": command, "git_revision": git_revision(),
          "machine": machine_description(), "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
          "seconds": round(time.time() - start), "rows": rows,
          "notes": [f"Target: the distilled student has fewer test errors than the labeled one: "
                    f"{'met' if gain > 0 else 'not met'} on the mean of {seeds} seeds ({gain:+.1f} errors in its favour), "
                    f"{'beyond' if abs(gain) > spread else 'within'} the larger of the two students' sd ({spread:.1f}).",
                    "Run again on the same RUNS_DIR, the script finds its runs finished and writes this file again."]}
open("docs/results/images.json", "w").write(json.dumps(record, indent=2) + "\n")
print("wrote docs/results/images.json")
PY
