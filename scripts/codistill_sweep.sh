#!/bin/bash
# The co-distillation sweep behind configs/codistill/mlp-2peers.yaml's alpha and temperature: the
# quick profile's groups (2 and 4 peers, seeds 1 and 2), alone (alpha 0) and co-distilled, one run
# each; prints a Markdown table of every peer's test errors and gain. About 1 minute per run here.
# Usage: scripts/codistill_sweep.sh [RUNS_DIR]   (default runs/codistill-sweep; finished runs are kept)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs/codistill-sweep}
quick=(--set train.epochs=15 --set data.train_limit=20000 --set codistill.burn_in=100 --set train.threads=1)
run() {  # name peers seed alpha temperature
  [ -f "$runs/$1/result.json" ] && return
  build/distillery codistill --config configs/codistill/mlp-2peers.yaml "${quick[@]}" --set "run.dir=$runs" \
    --set "name=$1" --set "codistill.peers=$2" --set "train.seed=$3" --set "codistill.alpha=$4" \
    --set "codistill.temperature=$5" > "$runs/$1.log" 2>&1 || { echo "$1 failed: see $runs/$1.log" >&2; exit 1; }
}
mkdir -p "$runs"
for seed in 1 2; do
  for peers in 2 4; do
    run "p$peers-alone-s$seed" $peers $seed 0 3
    for setting in "0.15 3" "0.25 2" "0.25 3" "0.25 5" "0.5 2" "0.5 3" "1 3"; do
      set -- $setting
      run "p$peers-a$1-T$2-s$seed" $peers $seed $1 $2
    done
  done
done
python3 - "$runs" <<'PY'
import glob, json, os, sys
runs = sys.argv[1]
errors = {os.path.basename(os.path.dirname(f)): [p["test"]["errors"] for p in json.load(open(f))["peers"]]
          for f in glob.glob(f"{runs}/*/result.json")}
print("| peers | seed | alpha | T | alone: test errors per peer | co-distilled | gain per peer | every peer >= 10% |")
print("| ---: | ---: | ---: | ---: | --- | --- | --- | :---: |")
rows = []
for name, errs in errors.items():
    peers, setting, temperature, seed = name.split("-") if "alone" not in name else (None,) * 4
    if peers is None:
        continue
    alone = errors[f"{peers}-alone-{seed}"]
    gains = [100 * (1 - e / a) for e, a in zip(errs, alone)]
    rows.append((int(peers[1:]), int(seed[1:]), float(setting[1:]), float(temperature[1:]), alone, errs, gains))
for peers, seed, alpha, t, alone, errs, gains in sorted(rows):
    print(f"| {peers} | {seed} | {alpha:g} | {t:g} | {', '.join(map(str, alone))} | {', '.join(map(str, errs))} | "
          f"{', '.join(f'{g:.1f}%' for g in gains)} | {'yes' if min(gains) >= 10 else 'no'} |")
PY
