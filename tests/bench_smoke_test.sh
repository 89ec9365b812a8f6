#!/usr/bin/env bash
# `make bench` at toy sizes (bench/run.py --smoke): every phase must run and leave its figures, so
# that no phase can break unseen. Measures nothing worth keeping; writes only under BUILD/bench-smoke.
# Usage: bench_smoke_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 source=$2
work=$build/bench-smoke
cd "$source"
/usr/bin/python3 bench/run.py --smoke --build "$build" --work "$work"
/usr/bin/python3 - "$work/bench.json" "$work/BENCH.md" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
phases = ["microbench", "glom_memory", "python_gemm_1024", "mlp", "distill_e1", "bf16_vs_python_fp32",
          "bf16_vs_python_bf16", "capsnet", "codistill", "glom"]
missing = [p for p in phases if p not in report["figures"]]
if missing:
    sys.exit(f"FAIL the smoke bench left no figures for: {', '.join(missing)}")
if not report.get("rows"):
    sys.exit("FAIL the smoke bench wrote no result rows")
if "# " not in open(sys.argv[2]).read():
    sys.exit("FAIL the smoke bench wrote no report page")
print(f"ok   every phase ran: {', '.join(phases)}; {len(report['rows'])} rows; {report['seconds']:.0f} s")
PY
