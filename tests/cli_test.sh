#!/usr/bin/env bash
# End-to-end checks of the distillery executable: exit codes, run folders, co-distillation over
# Gloo with a peer killed mid-run, prediction on an image file.
set -uo pipefail
exe=$1 source=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
check() {  # check NAME EXPECTED_CODE COMMAND...
  local name=$1 expected=$2; shift 2
  "$@" >"$work/out.txt" 2>&1
  local code=$?
  if [ "$code" != "$expected" ]; then
    echo "FAIL $name: exit code $code, expected $expected"; sed 's/^/  | /' "$work/out.txt" | tail -15
    failures=$((failures + 1))
  else
    echo "ok   $name"
  fi
}
contains() {  # contains NAME TEXT FILE
  if grep -q -- "$2" "$3"; then echo "ok   $1"; else echo "FAIL $1: '$2' not in $3"; failures=$((failures + 1)); fi
}

check "help" 0 "$exe" --help
check "unknown subcommand is bad usage" 2 "$exe" frobnicate
check "unknown config key is bad input" 2 "$exe" train --set train.lr_rate=0.1
contains "unknown key names the nearest key" "did you mean 'train.lr'" "$work/out.txt"
check "missing checkpoint is bad input" 2 "$exe" eval --checkpoint "$work/none.pt"
check "temperature <= 0 is bad input" 2 "$exe" distill --teacher "$work/none.pt" --set distill.temperature=0
tiny=(--set run.dir="$work/runs" --set data.train_limit=2000 --set data.test_limit=500 --set "model.hidden=[64]"
      --set train.epochs=1 --set train.threads=1)
check "train a tiny MLP" 0 "$exe" train --config "$source/configs/mlp/quick.yaml" "${tiny[@]}" --set name=tiny
for f in config.yaml metrics.jsonl checkpoint.pt result.json report.html; do
  [ -f "$work/runs/tiny/$f" ] && echo "ok   run folder has $f" || { echo "FAIL run folder lacks $f"; failures=$((failures + 1)); }
done
check "eval the checkpoint" 0 "$exe" eval --checkpoint "$work/runs/tiny/checkpoint.pt"
contains "eval prints errors" "test errors:" "$work/out.txt"
check "a global option after the subcommand" 0 "$exe" eval --data-dir "$DISTILLERY_DATA" --checkpoint "$work/runs/tiny/checkpoint.pt"
check "a missing data folder given after the subcommand is bad input" 2 "$exe" eval --data-dir "$work/no-data" \
  --checkpoint "$work/runs/tiny/checkpoint.pt"
check "an unknown option after the subcommand is bad usage" 2 "$exe" eval --bogus --checkpoint "$work/runs/tiny/checkpoint.pt"
check "architecture mismatch on resume is bad input" 2 "$exe" train --config "$source/configs/mlp/quick.yaml" "${tiny[@]}" \
  --set name=tiny --set "model.hidden=[32]"
contains "mismatch names the config key and both values" "model.hidden = \[64\], this run asks for \[32\]" "$work/out.txt"
# Without the run's config.yaml the checkpoint itself catches the mismatch.
mv "$work/runs/tiny/config.yaml" "$work/tiny-config.yaml"
check "architecture mismatch without config.yaml is bad input" 2 "$exe" train --config "$source/configs/mlp/quick.yaml" \
  "${tiny[@]}" --set name=tiny --set "model.hidden=[32]"
contains "mismatch names the tensor and shapes" "in the checkpoint but" "$work/out.txt"
mv "$work/tiny-config.yaml" "$work/runs/tiny/config.yaml"
check "compare runs" 0 "$exe" compare "$work/runs/tiny"
contains "compare shows what the model costs" "multiply-adds" "$work/out.txt"
[ -f "$work/runs/tiny/model.ts.pt" ] && echo "ok   run folder has model.ts.pt" || { echo "FAIL run folder lacks model.ts.pt"; failures=$((failures + 1)); }
check "export a checkpoint as TorchScript" 0 "$exe" export "$work/runs/tiny/checkpoint.pt" --out "$work/tiny.ts.pt"
[ -s "$work/tiny.ts.pt" ] && echo "ok   export wrote the file" || { echo "FAIL export wrote nothing"; failures=$((failures + 1)); }
check "inspect prints multiply-adds" 0 "$exe" inspect "$work/runs/tiny/checkpoint.pt"
contains "inspect counts an MLP's multiply-adds" "multiply-adds per image: 50816" "$work/out.txt"
# A model too large for memory: one line naming the keys, exit 2, no LibTorch backtrace.
check "a model too large for memory is bad input" 2 "$exe" train --config "$source/configs/mlp/quick.yaml" "${tiny[@]}" \
  --set name=huge --set "model.hidden=[1000000,1000000]"
contains "out of memory names the keys" "out of memory: one tensor of .* GiB was asked for; the model's size (model.hidden" "$work/out.txt"
if grep -q "frame #" "$work/out.txt"; then echo "FAIL out of memory printed a backtrace"; failures=$((failures + 1)); else echo "ok   no backtrace"; fi
# Tensor files: `data --out` writes them, `train` and `eval --images` read them back.
check "data writes tensor files" 0 "$exe" data --set data.train_limit=300 --set data.test_limit=100 --out "$work/tensors"
contains "data summarises the splits" "train .* 300 images \[1, 28, 28\]" "$work/out.txt"
check "eval a tensor file" 0 "$exe" eval --checkpoint "$work/runs/tiny/checkpoint.pt" --images "$work/tensors/test.pt"
contains "eval scores the tensor file's 100 images" "of 100 (accuracy" "$work/out.txt"
printf 'not a tensor file' > "$work/bad.pt"
check "a tensor file that is not one is bad input" 2 "$exe" train "${tiny[@]}" --set name=bad-tensors --set data.dataset=tensors \
  --set data.path="$work/bad.pt" --set data.test_path="$work/tensors/test.pt"
contains "the bad tensor file is named" "bad.pt: not a file written by torch.save" "$work/out.txt"
check "eval of missing images is bad input" 2 "$exe" eval --checkpoint "$work/runs/tiny/checkpoint.pt" --images "$work/none-such"
contains "the missing images are named" "none-such: no such file" "$work/out.txt"
# A 28x28 binary PGM of a vertical bar (a "1").
{ printf 'P5\n28 28\n255\n'; for y in $(seq 0 27); do for x in $(seq 0 27); do
    if [ "$x" -ge 12 ] && [ "$x" -le 15 ] && [ "$y" -ge 4 ] && [ "$y" -le 23 ]; then printf '\377'; else printf '\000'; fi
  done; done; } > "$work/one.pgm"
check "predict an image file" 0 "$exe" predict --checkpoint "$work/runs/tiny/checkpoint.pt" -T 4 "$work/one.pgm"
contains "predict prints the class" "predicted" "$work/out.txt"
check "predict a missing image is bad input" 2 "$exe" predict --checkpoint "$work/runs/tiny/checkpoint.pt" "$work/missing.png"
check "islands without a GLOM model is bad input" 2 "$exe" islands --model "$work/none.pt" "$work/one.pgm"
contains "islands names the missing model" "none.pt: no such GLOM model" "$work/out.txt"
check "islands with a negative object count is bad usage" 2 "$exe" islands --model "$work/none.pt" -k -1 "$work/one.pgm"
# The same 2-peer group in one process and as 2 processes over Gloo must reach the same errors.
group=(--config "$source/configs/codistill/mlp-2peers.yaml" "${tiny[@]}" --set train.epochs=2
       --set codistill.exchange_every=5 --set codistill.burn_in=0)
check "codistill in one process" 0 "$exe" codistill "${group[@]}" --set name=inproc
grep '^peer' "$work/out.txt" | sort > "$work/inproc.txt"
check "codistill as 2 processes over Gloo" 0 timeout 300 "$exe" codistill "${group[@]}" --procs 2 --set name=gloo
if [ -s "$work/inproc.txt" ] && [ "$(grep -o '\[[0-9,]*\]' "$work/out.txt" | head -1)" = \
     "[$(sed 's/.*errors //' "$work/inproc.txt" | paste -sd,)]" ]; then
  echo "ok   one process and Gloo give the same peer errors"
else
  echo "FAIL one process and Gloo differ: $(cat "$work/inproc.txt" | tr '\n' ' ') vs $(grep 'peer test errors' "$work/out.txt")"
  failures=$((failures + 1))
fi
# Three workers over Gloo on 127.0.0.1 (7 steps an epoch on 667-image shards, 3 epochs); rank 2
# dies at step 12; the others must finish.
check "codistill with a peer killed mid-run" 0 timeout 300 "$exe" codistill --config "$source/configs/codistill/mlp-2peers.yaml" \
  --procs 3 "${tiny[@]}" --set train.epochs=3 --set name=fault --set codistill.exchange_every=5 --set codistill.burn_in=0 \
  --set codistill.fault_rank=2 --set codistill.fault_exit_step=12 --set codistill.timeout=20
contains "the report names the lost peer" '"lost_peers": \[' "$work/runs/fault/result.json"
lost=$(sed -n '/"lost_peers"/,/\]/p' "$work/runs/fault/result.json" | tr -d ' \n')
[ "$lost" = '"lost_peers":[2],' ] && echo "ok   peer 2, and only peer 2, is the lost one" \
  || { echo "FAIL lost peers should be [2], the report says: ${lost:-nothing}"; failures=$((failures + 1)); }
[ -f "$work/runs/fault/peer-0/result.json" ] && [ -f "$work/runs/fault/peer-1/result.json" ] && echo "ok   survivors finished" \
  || { echo "FAIL survivors did not finish"; failures=$((failures + 1)); }

echo "cli checks: $failures failed"
exit $(( failures > 0 ))
