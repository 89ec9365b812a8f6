#!/usr/bin/env bash
# Distil your own PyTorch model: the walk-through of README.md, start to end.
#   1. PyTorch trains a CNN teacher on an image folder and scripts it and a 7x smaller student;
#   2. distillery distils the teacher into the student on the training images, without labels;
#   3. PyTorch loads the trained student (student.ts.pt) and scores it beside the teacher.
# The folder is Fashion-MNIST as 32x32 RGB images (scripts/image_folder.py --colour).
# Usage: examples/pytorch-student/run.sh [WORK_DIR] [TRAIN_IMAGES] [TEST_IMAGES] [EPOCHS]
#        (defaults: runs-pytorch-student, all 60,000, all 10,000, 3)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=${1:-runs-pytorch-student}
train_images=${2:-0}
test_images=${3:-0}
epochs=${4:-3}
bin=${DISTILLERY:-$root/build/distillery}
python=/usr/bin/python3
folder=$work/fashion-colour
mkdir -p "$work"
[ -d "$folder/train" ] || "$python" "$root/scripts/image_folder.py" --dataset fashion-mnist --colour --out "$folder" \
  --train "$train_images" --test "$test_images"

echo "== 1. PyTorch: train the teacher, script teacher and student"
(cd "$here" && "$python" train_teacher.py --folder "$(cd "$folder" && pwd)" --out "$(cd "$work" && pwd)" --epochs "$epochs")
echo "== 2. distillery: distil the teacher into the student, without labels"
"$bin" distill --teacher "$work/teacher.pt" --student "$here/student.yaml" --set model.path="$work/student.pt" --set run.resume=false \
  --set data.path="$folder/train" --set data.test_path="$folder/test" --set run.dir="$work" --set train.epochs="$epochs" \
  --set data.dir="$work/data"
echo "== 3. PyTorch: load the trained student and score it"
(cd "$here" && "$python" evaluate.py --folder "$(cd "$folder" && pwd)" --student "$(cd "$work" && pwd)/pytorch-student/student.ts.pt" \
  --teacher "$(cd "$work" && pwd)/teacher.pt" --result "$(cd "$work" && pwd)/pytorch-student/result.json")
