#!/usr/bin/env bash
# Runs the README's two worked examples (the five-minute start, and a teacher and students on an
# image folder) and records their figures in docs/results/readme-examples.json, which
# `distillery results` renders into README.md. About 10 minutes on 2 cores.
# Usage: scripts/readme_examples.sh [RUNS_DIR]   (default runs-readme; removed first)
set -euo pipefail
runs=${1:-runs-readme}
bin=${DISTILLERY:-build/distillery}
images=$runs/colour
rm -rf "$runs"
start=$(date +%s.%N)

d() { echo "+ distillery $*"; "$bin" "$@" --set run.dir="$runs" >/dev/null; }
d train --config configs/hinton2015/teacher.yaml --set train.epochs=3
d distill --teacher "$runs/teacher/checkpoint.pt" --student configs/hinton2015/student-distilled.yaml \
  --set data.train_limit=10000 --set train.epochs=10
d train --config configs/hinton2015/student-hard.yaml --set data.train_limit=10000 --set train.epochs=10

/usr/bin/python3 scripts/image_folder.py --out "$images" --colour --train 10000 --test 2000 --unlabeled 10000
d train --config configs/images/teacher.yaml --set data.path="$images"
d distill --teacher "$runs/images-teacher/checkpoint.pt" --student configs/images/student.yaml \
  --set data.path="$images/unlabeled" --set data.test_path="$images/test"
d train --config configs/images/student.yaml --set data.labels=auto --set data.path="$images" --set name=images-student-labels

/usr/bin/python3 - "$runs" "$start" "$0 $*" <<'EOF'
import json, os, subprocess, sys, time, datetime
runs, start, command = sys.argv[1], float(sys.argv[2]), sys.argv[3]
def run(name):
    return json.load(open(os.path.join(runs, name, "result.json")))
rows = []
for name, what in (("teacher", "five-minute start: teacher 1200-1200, 3 epochs on 60,000 images"),
                   ("student-hard", "five-minute start: student 800-800 on the labels of 10,000 images, 10 epochs"),
                   ("student-distilled", "five-minute start: the same student distilled at T = 20 on the same 10,000 images"),
                   ("images-teacher", "image folder: ConvNet teacher, 9,500 labeled 32x32 RGB images, 5 epochs"),
                   ("images-student-labels", "image folder: ConvNet student (30x smaller) on 10,000 labeled images, 5 epochs"),
                   ("images-student", "image folder: the same student distilled on 10,000 unlabeled images, 5 epochs")):
    r = run(name)
    rows.append({"id": name, "what": what + f" ({r['parameters']:,} parameters): test errors", "paper": None,
                 "ours": r["test"]["errors"], "unit": f"errors of {r['test']['count']:,}"})
revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
if subprocess.run(["git", "diff", "--quiet", "HEAD"]).returncode != 0:
    revision += "+uncommitted"
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
record = {"experiment": "readme-examples", "title": "The README's worked examples", "profile": "-",
          "command": command.strip(), "git_revision": revision, "machine": {"cpu": cpu, "cores": os.cpu_count()},
          "date": datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"), "seconds": time.time() - start, "rows": rows}
open("docs/results/readme-examples.json", "w").write(json.dumps(record, indent=2) + "\n")
print("wrote docs/results/readme-examples.json")
EOF
