#!/usr/bin/env bash
# report.html in a real browser: headless Chromium loads a run's report from disk with the network
# off, the DOM must hold the results table, the SVG curves, the confusion matrix and the images,
# nothing may fail to load, and a screenshot is kept (OUT_DIR/report-screenshot.png).
# Usage: report_browser_test.sh EXE SOURCE_DIR OUT_DIR
set -uo pipefail
exe=$1 source=$2 out=$3
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
  echo "FAIL chromium is not installed: run scripts/setup.sh (it installs Debian's chromium)"; exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
expect() {  # expect NAME PATTERN FILE
  if grep -q -- "$2" "$3"; then echo "ok   $1"; else echo "FAIL $1: '$2' not in $3"; failures=$((failures + 1)); fi
}
export DISTILLERY_DATA=${DISTILLERY_DATA:-$source/data}
"$exe" train --config "$source/configs/mlp/quick.yaml" --set run.dir="$work/runs" --set name=browser \
  --set data.train_limit=2000 --set data.test_limit=500 --set "model.hidden=[64]" --set train.epochs=3 \
  --set train.threads=1 >"$work/train.log" 2>&1 || { echo "FAIL training the run to report on"; cat "$work/train.log"; exit 1; }
page="file://$work/runs/browser/report.html"
chrome=("$browser" --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run
        --proxy-server=127.0.0.1:9 --user-data-dir="$work/profile" --enable-logging=stderr --v=0)
timeout 120 "${chrome[@]}" --dump-dom "$page" >"$work/dom.html" 2>"$work/console.txt"
echo "browser exit code: $?"
expect "the page has a title" "<h1>distillery run: browser</h1>" "$work/dom.html"
expect "the results table is there" "test accuracy" "$work/dom.html"
expect "the training curves are inline SVG" "<svg" "$work/dom.html"
expect "the confusion matrix is there" 'class="confusion"' "$work/dom.html"
expect "misclassified images are embedded" "data:image/png;base64" "$work/dom.html"
# Anything fetched from outside the page (a script, a font, a stylesheet) would fail against the dead
# proxy and be logged; so would a script error.
if grep -E "net::ERR|Uncaught|CONSOLE.*(Error|error)" "$work/console.txt" >"$work/errors.txt"; then
  echo "FAIL the page logged errors:"; sed 's/^/  | /' "$work/errors.txt" | head; failures=$((failures + 1))
else
  echo "ok   no load or script errors"
fi
mkdir -p "$out"
rm -f "$out/report-screenshot.png"
timeout 120 "${chrome[@]}" --screenshot="$out/report-screenshot.png" --window-size=1100,2400 "$page" >/dev/null 2>&1
size=$(stat -c %s "$out/report-screenshot.png" 2>/dev/null || echo 0)
# A blank page compresses to a few kilobytes; charts, tables and digits do not.
if [ "$size" -gt 30000 ]; then echo "ok   screenshot $out/report-screenshot.png ($size bytes)"; else
  echo "FAIL screenshot missing or blank ($size bytes)"; failures=$((failures + 1)); fi
echo "browser checks: $failures failed"
exit $(( failures > 0 ))
