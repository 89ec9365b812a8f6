#!/usr/bin/python3
"""`make bench`: distillery's speed against plain PyTorch, and against the machine's limit.

Runs, in one invocation:
  1. build/bench/distillery_microbench (Google Benchmark): hot paths and the GEMM speed that is the
     machine's compute limit for these MLP workloads;
  2. end-to-end pairs, C++ (the `distillery` CLI) and Python (bench/python/*.py) alternating, each
     repeated (median): one MLP training epoch, and distillation for 1 and 3 epochs;
  3. optionally, build times (one-file change; a clean library build with --clean-build).
Writes docs/results/bench.json (rows for `distillery results`) and docs/BENCH.md.
--quick: 10000 training images, 1 repeat, no build timing; writes under the work folder instead of
docs/ unless --json/--md say otherwise.

Run with /usr/bin/python3 (Debian's python3-torch, the same torch as libtorch-dev).
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable or "/usr/bin/python3"
TEACHER_CONFIG = "configs/hinton2015/teacher.yaml"
# The Python scripts use SGD (lr 0.1, momentum 0.9, cosine); the configs may say otherwise.
SAME_OPTIMIZER_AS_PYTHON = ["--set", "train.optimizer=sgd", "--set", "train.lr=0.1", "--set", "train.momentum=0.9",
                            "--set", "train.schedule=cosine"]
STUDENT_CONFIG = "configs/hinton2015/student-distilled.yaml"
CPU_SECONDS = {}  # log path -> user + system seconds of that process (whole process, not only the timed loop)
TARGETS = {"distill_ratio": 2.0, "mlp_ratio": 1.2, "student_gemm_fraction": 60.0, "capsnet_ratio": 1.1, "glom_ratio": 1.3}


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_process(command, log_path, cwd=ROOT, env=None):
    """Runs a command with stdout/stderr to log_path; returns (stdout text, wall seconds, peak RSS in MiB).
    Peak RSS comes from wait4's rusage of that one child; its CPU seconds go to CPU_SECONDS."""
    start = time.perf_counter()
    with open(log_path, "w") as out:
        out.write("$ " + " ".join(command) + "\n")
        out.flush()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=out, text=True)
        stdout = process.stdout.read()
        process.stdout.close()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.write(stdout)
    seconds = time.perf_counter() - start
    CPU_SECONDS[log_path] = usage.ru_utime + usage.ru_stime
    if process.returncode != 0:
        tail = open(log_path).read()[-3000:]
        raise RuntimeError(f"{' '.join(command)} exited with {process.returncode}; log {log_path}:\n{tail}")
    return stdout, seconds, usage.ru_maxrss / 1024.0


def last_json_line(text):
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError("no JSON line in output:\n" + text[-2000:])


# ----------------------------------------------------------------------------------------------
# machine
# ----------------------------------------------------------------------------------------------

def machine_description():
    cpu, flags = "unknown", ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1]
    simd = [f for f in ("avx512f", "avx512_bf16", "amx_bf16", "avx2", "fma", "avx") if f" {f} " in f" {flags} "]
    memory = "?"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    blas = os.path.realpath("/usr/lib/x86_64-linux-gnu/libblas.so.3")
    try:
        import ctypes
        blas_threads = ctypes.CDLL(blas).openblas_get_num_threads()
    except (OSError, AttributeError):
        blas_threads = None
    import torch
    return {"cpu": cpu, "cores": os.cpu_count(), "nproc": int(subprocess.run(["nproc"], capture_output=True, text=True).stdout),
            "simd": simd, "memory": memory, "kernel": platform.release(), "blas": blas, "blas_threads": blas_threads, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads()}


def git_revision():
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return (rev or "unknown") + ("+uncommitted" if dirty else "")
    except OSError:
        return "unknown"


def load_average():
    with open("/proc/loadavg") as f:
        return [float(v) for v in f.read().split()[:3]]


# ----------------------------------------------------------------------------------------------
# micro-benchmarks
# ----------------------------------------------------------------------------------------------

def run_microbench(args, work):
    binary = os.path.join(ROOT, args.build, "bench", "distillery_microbench")
    out = os.path.join(work, "microbench.json")
    command = [binary, f"--benchmark_out={out}", "--benchmark_out_format=json", "--benchmark_filter=-BM_GlomStepMemory",
               f"--benchmark_min_time={0.01 if args.smoke else 0.1 if args.quick else 0.5}"]
    if not args.quick:
        command.append("--benchmark_repetitions=3")
        command.append("--benchmark_report_aggregates_only=true")
    log("micro-benchmarks: " + " ".join(command[1:]))
    run_process(command, os.path.join(work, "microbench.log"))
    with open(out) as f:
        raw = json.load(f)
    results = {}
    for b in raw["benchmarks"]:
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        name = b.get("run_name", b["name"])
        scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b.get("time_unit", "ns")]
        results[name] = {"seconds": b["real_time"] * scale, "items_per_second": b.get("items_per_second"),
                         "bytes_per_second": b.get("bytes_per_second"), "flops": b.get("FLOPS"),
                         "error": b.get("error_message"), "threads": b.get("threads")}
    return {"command": " ".join(os.path.relpath(c, ROOT) if c == binary else c for c in command),
            "context": {k: raw["context"].get(k) for k in ("num_cpus", "mhz_per_cpu", "library_build_type")},
            "results": results}


def glom_memory(args, work):
    """Peak tensor memory of one GLOM training step at 7x7 to 56x56 grids (BM_GlomStepMemory counts the
    bytes of live CPU tensors through a wrapping allocator: no allocator caching, no library footprint)."""
    binary = os.path.join(ROOT, args.build, "bench", "distillery_microbench")
    out = os.path.join(work, "glom-memory.json")
    run_process([binary, "--benchmark_filter=BM_GlomStepMemory", f"--benchmark_out={out}", "--benchmark_out_format=json"],
                os.path.join(work, "glom-memory.log"))
    with open(out) as f:
        raw = json.load(f)
    sizes = []
    for b in raw["benchmarks"]:
        locations = int(b["locations"])
        grid = int(round(locations ** 0.5))
        sizes.append({"grid": grid, "locations": locations, "mib": b["peak_tensor_mib"]})
    sizes.sort(key=lambda r: r["locations"])
    per = [r["mib"] / r["locations"] for r in sizes]
    # Each size has 4x the locations of the one before: linear memory grows 4x, quadratic (an N x N matrix) 16x.
    growths = [b["mib"] / a["mib"] for a, b in zip(sizes, sizes[1:]) if a["mib"] > 0]
    growth = growths[-1] if growths else float("nan")
    verdict = (f"Each step to 4x the locations multiplies the peak tensor memory by {', '.join(f'{g:.2f}x' for g in growths)} "
               f"(linear: 4x, quadratic: 16x): {'linear' if growth < 4.5 else 'faster than linear'}.")
    log("GLOM memory: " + verdict)
    return {"sizes": sizes, "per_location_mib": per, "growths": growths, "growth_4x_locations": growth,
            "largest_locations": sizes[-1]["locations"] if sizes else 0, "verdict": verdict}


def python_gemm(n, repeats=10):
    code = f"""
import json, time, torch
a, b, c = torch.randn({n}, {n}), torch.randn({n}, {n}), torch.empty({n}, {n})
torch.mm(a, b, out=c)
best = []
for _ in range(3):
    t = time.perf_counter()
    for _ in range({repeats}): torch.mm(a, b, out=c)
    best.append((time.perf_counter() - t) / {repeats})
s = sorted(best)[1]
print(json.dumps({{"seconds": s, "flops": 2 * {n}**3 / s}}))
"""
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=True).stdout
    return last_json_line(out)


# ----------------------------------------------------------------------------------------------
# end-to-end pairs
# ----------------------------------------------------------------------------------------------

def cli(args):
    return os.path.join(ROOT, args.build, "distillery")


def cpp_rates(result, samples):
    """distillery's result.json: samples_per_second counts the training steps only (evaluation and
    checkpoints timed apart) and seconds the whole loop. Builds from before that change reported the
    whole loop in both; then the steps-only rate is unknown."""
    whole = samples / result["seconds"]
    steps_only = result["samples_per_second"]
    return {"samples_per_second": steps_only if abs(steps_only - whole) > 0.002 * whole else None,
            "samples_per_second_with_epoch_end": whole}


def cpp_train(args, work, name):
    run_dir = os.path.join(work, "runs")
    command = [cli(args), "train", "--config", TEACHER_CONFIG, "--set", "train.epochs=1", *SAME_OPTIMIZER_AS_PYTHON,
               "--set", f"run.dir={run_dir}",
               "--set", f"name={name}", "--set", "run.resume=false"]
    if args.limit:
        command += ["--set", f"data.train_limit={args.limit}"]
    _, wall, rss = run_process(command, os.path.join(work, f"{name}.log"))
    with open(os.path.join(run_dir, name, "result.json")) as f:
        result = json.load(f)
    samples = args.limit or 60000
    return {**cpp_rates(result, samples), "seconds": result["seconds"], "samples": samples,
            "cpu_seconds": CPU_SECONDS[os.path.join(work, f"{name}.log")],
            "test_errors": result["test"]["errors"], "parameters": result["parameters"], "wall_seconds": wall,
            "peak_rss_mib": rss, "checkpoint": os.path.join(run_dir, name, "checkpoint.pt")}


def run_config(run_dir, name):
    """The configuration a distillery run recorded (config.yaml in its run folder), defaults included."""
    import yaml  # Debian's python3-yaml; imported here so that --render-only needs nothing beyond the standard library
    with open(os.path.join(run_dir, name, "config.yaml")) as f:
        return yaml.safe_load(f)


def cpp_distill(args, work, name, teacher, epochs, precision="fp32"):
    run_dir = os.path.join(work, "runs")
    command = [cli(args), "distill", "--teacher", teacher, "--student", STUDENT_CONFIG, "--set", f"train.epochs={epochs}",
               *SAME_OPTIMIZER_AS_PYTHON, "--set", f"train.precision={precision}",
               "--set", "distill.hard_weight=0",  # soft targets only, as bench/python/distill_epoch.py (the config adds labels)
               "--set", f"run.dir={run_dir}", "--set", f"name={name}", "--set", "run.resume=false"]
    if args.limit:
        command += ["--set", f"data.train_limit={args.limit}"]
    _, wall, rss = run_process(command, os.path.join(work, f"{name}.log"))
    with open(os.path.join(run_dir, name, "result.json")) as f:
        result = json.load(f)
    config = run_config(run_dir, name)
    return {**cpp_rates(result, result["teacher_lookups"]), "seconds": result["seconds"],
            "teacher_batches": config["distill"]["teacher_batches"], "batch": config["train"]["batch_size"],
            "cpu_seconds": CPU_SECONDS[os.path.join(work, f"{name}.log")], "samples": result["teacher_lookups"],
            "teacher_rows": result["teacher_rows"],
            "test_errors": result["test"]["errors"], "parameters": result["parameters"], "wall_seconds": wall,
            "peak_rss_mib": rss}


def run_python(work, name, command):
    """Runs a reference script; its last JSON line plus wall time, peak memory and CPU seconds."""
    log_path = os.path.join(work, f"{name}.log")
    stdout, wall, rss = run_process(command, log_path, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    result = last_json_line(stdout)
    result.update(wall_seconds=wall, peak_rss_mib=rss, cpu_seconds=CPU_SECONDS[log_path])
    return result


CAPSNET_CONFIG = "configs/capsnet/quick.yaml"


def cpp_capsnet(args, work, name):
    """One epoch of the quick CapsNet (margin + reconstruction loss) on args.capsnet_limit images."""
    run_dir = os.path.join(work, "runs")
    command = [cli(args), "train", "--config", CAPSNET_CONFIG, "--set", f"run.dir={run_dir}", "--set", f"name={name}",
               "--set", "run.resume=false", "--set", f"data.train_limit={args.capsnet_limit}"]
    _, wall, rss = run_process(command, os.path.join(work, f"{name}.log"))
    with open(os.path.join(run_dir, name, "result.json")) as f:
        result = json.load(f)
    return {**cpp_rates(result, args.capsnet_limit), "seconds": result["seconds"], "samples": args.capsnet_limit,
            "cpu_seconds": CPU_SECONDS[os.path.join(work, f"{name}.log")], "test_errors": result["test"]["errors"],
            "parameters": result["parameters"], "wall_seconds": wall, "peak_rss_mib": rss}


def py_capsnet(args, work, name):
    # The network and loop of configs/capsnet/quick.yaml.
    command = [PYTHON, os.path.join("bench", "python", "capsnet_epoch.py"), "--epochs", "1", "--limit", str(args.capsnet_limit),
               "--conv", "128", "--types", "16", "--batch", "32", "--jitter", "0"]
    return run_python(work, name, command)


def cpp_glom(args, work, name):
    """GLOM training steps (B = 8, 56 x 56 images) in C++: distillery_microbench's BM_GlomStep/56."""
    binary = os.path.join(ROOT, args.build, "bench", "distillery_microbench")
    out = os.path.join(work, f"{name}.json")
    min_time = 0.5 if args.smoke else 15  # about 60 steps, as Python
    _, wall, rss = run_process([binary, "--benchmark_filter=BM_GlomStep/56/", f"--benchmark_min_time={min_time}",
                                f"--benchmark_out={out}", "--benchmark_out_format=json"], os.path.join(work, f"{name}.log"))
    with open(out) as f:
        b = json.load(f)["benchmarks"][0]
    return {"samples_per_second": b["items_per_second"], "samples_per_second_with_epoch_end": b["items_per_second"],
            "test_errors": None, "parameters": int(b["parameters"]), "wall_seconds": wall, "peak_rss_mib": rss,
            "cpu_seconds": CPU_SECONDS[os.path.join(work, f"{name}.log")]}


def py_glom(args, work, name):
    command = [PYTHON, os.path.join("bench", "python", "glom_steps.py"), "--side", "56", "--batch", "8",
               "--steps", "3" if args.smoke else "60"]
    result = run_python(work, name, command)
    result.update(samples_per_second_with_epoch_end=result["samples_per_second"], test_errors=None)
    return result


CODISTILL_CONFIG = "configs/codistill/mlp-2peers.yaml"
# The co-distillation pair: short enough for a benchmark, long enough that the distillation term
# and several exchanges run (burn-in and exchange interval shortened on both sides).
CODISTILL_SETTINGS = {"epochs": 3, "alpha": 1.0, "temperature": 2.0, "burn_in": 50, "exchange_every": 50}


def cpp_codistill(args, work, name):
    """2 peers in one process on args.codistill_limit images (half each); rate = samples of all
    peers over the whole loop (the CLI evaluates every peer at each epoch end, as the script does)."""
    run_dir = os.path.join(work, "runs")
    c = CODISTILL_SETTINGS
    command = [cli(args), "codistill", "--config", CODISTILL_CONFIG, "--peers", "2", "--set", f"run.dir={run_dir}",
               "--set", f"name={name}", "--set", "run.resume=false", "--set", f"data.train_limit={args.codistill_limit}",
               "--set", f"train.epochs={c['epochs']}", "--set", f"codistill.alpha={c['alpha']}",
               "--set", f"codistill.temperature={c['temperature']}", "--set", f"codistill.burn_in={c['burn_in']}",
               "--set", f"codistill.exchange_every={c['exchange_every']}"]
    _, wall, rss = run_process(command, os.path.join(work, f"{name}.log"))
    with open(os.path.join(run_dir, name, "result.json")) as f:
        result = json.load(f)
    samples = result["steps"] * 100 * 2
    errors = result["group"]["peer_errors"]
    return {"samples_per_second": None, "samples_per_second_with_epoch_end": samples / result["seconds"],
            "seconds": result["seconds"], "samples": samples, "cpu_seconds": CPU_SECONDS[os.path.join(work, f"{name}.log")],
            "test_errors": sum(errors) / len(errors), "peer_errors": errors, "parameters": result["parameters"],
            "wall_seconds": wall, "peak_rss_mib": rss}


def py_codistill(args, work, name):
    c = CODISTILL_SETTINGS
    command = [PYTHON, os.path.join("bench", "python", "codistill_steps.py"), "--limit", str(args.codistill_limit),
               "--epochs", str(c["epochs"]), "--alpha", str(c["alpha"]), "--temperature", str(c["temperature"]),
               "--burn-in", str(c["burn_in"]), "--exchange-every", str(c["exchange_every"])]
    return run_python(work, name, command)


def py_script(args, work, name, script, extra):
    command = [PYTHON, os.path.join("bench", "python", script), "--checkpoint", os.path.join(work, f"{name}.pt")] + extra
    if args.limit:
        command += ["--limit", str(args.limit)]
    return run_python(work, name, command)


def alternate(repeats, run_cpp, run_py, label):
    """C++ and Python alternate; the order flips every repeat so that drifting load hits both."""
    cpp, py = [], []
    for r in range(repeats):
        order = [("C++", run_cpp, cpp), ("Python", run_py, py)]
        if r % 2:
            order.reverse()
        for side, fn, into in order:
            result = fn(r)
            into.append(result)
            steps = result["samples_per_second"]
            log(f"{label} {side} repeat {r + 1}/{repeats}: {f'{steps:.0f}' if steps else '?'} samples/s (steps), "
                f"{result['samples_per_second_with_epoch_end']:.0f} (whole loop), "
                f"{result['test_errors']} test errors, peak {result['peak_rss_mib']:.0f} MiB")
    return cpp, py


def summarize(runs):
    steps = [r["samples_per_second"] for r in runs]
    whole = [r["samples_per_second_with_epoch_end"] for r in runs]
    errors = [r["test_errors"] for r in runs]
    return {"samples_per_second": statistics.median(steps) if None not in steps else None, "samples_per_second_runs": steps,
            "samples_per_second_with_epoch_end": statistics.median(whole), "samples_per_second_with_epoch_end_runs": whole,
            "test_errors": statistics.median(errors) if None not in errors else None, "test_errors_runs": errors,
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs), "runs": runs}


def mlp_parameters(hidden, inputs=784, classes=10):
    sizes = [inputs] + list(hidden) + [classes]
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def add_ratios(pair):
    """The headline ratio uses the steps-only rates when both sides have them, else the whole loop."""
    c, p = pair["cpp"], pair["python"]
    pair["ratio_with_epoch_end"] = c["samples_per_second_with_epoch_end"] / p["samples_per_second_with_epoch_end"]
    pair["ratio_steps"] = c["samples_per_second"] / p["samples_per_second"] if c["samples_per_second"] else None
    pair["ratio_basis"] = "training steps" if pair["ratio_steps"] else "whole loop"
    pair["ratio"] = pair["ratio_steps"] or pair["ratio_with_epoch_end"]
    for side in (c, p):
        side["headline_samples_per_second"] = side["samples_per_second"] if pair["ratio_steps"] else side["samples_per_second_with_epoch_end"]


def best_ratio(pair):
    """Fastest C++ run over fastest Python run: other jobs on the machine only ever slow a run down,
    so the best runs are the least disturbed ones."""
    key = "samples_per_second_runs" if pair.get("ratio_steps") else "samples_per_second_with_epoch_end_runs"
    return max(pair["cpp"][key]) / max(pair["python"][key])


def add_flops(side, flops_per_sample):
    """Achieved FLOP/s of one side; its fraction of the GEMM limit is derived in finish()."""
    side["flops_per_sample"] = flops_per_sample
    side["flops"] = flops_per_sample * side["headline_samples_per_second"]


def distill_pair(epochs, cpp, py, student_params, teacher_params):
    """One distillation comparison: medians per side, ratios, and FLOP/s counting 6 x the student's
    parameters per sample plus 2 x the teacher's per teacher row that actually ran."""
    samples = cpp[0]["samples"]
    pair = {"epochs": epochs, "cpp": summarize(cpp), "python": summarize(py), "samples": samples,
            "parameters": {"student": student_params, "teacher": teacher_params},
            "teacher_rows": {"cpp": int(statistics.median(r["teacher_rows"] for r in cpp)),
                             "python": int(statistics.median(r["teacher_rows"] for r in py))},
            "teacher_batches": cpp[0]["teacher_batches"], "batch": cpp[0]["batch"]}
    add_ratios(pair)
    for side in ("cpp", "python"):
        add_flops(pair[side], 6.0 * student_params + 2.0 * teacher_params * pair["teacher_rows"][side] / samples)
    return pair


# ----------------------------------------------------------------------------------------------
# build times
# ----------------------------------------------------------------------------------------------

def timed(command, log_path):
    _, seconds, _ = run_process(command, log_path)
    return seconds


def build_times(args, work):
    times = {}
    if args.clean_build:
        folder = os.path.join(work, "clean-build")
        shutil.rmtree(folder, ignore_errors=True)
        timed(["cmake", "-S", ".", "-B", folder, "-DCMAKE_BUILD_TYPE=Release", "-DDISTILLERY_BUILD_TESTS=OFF",
               "-DDISTILLERY_BUILD_BENCH=OFF"], os.path.join(work, "clean-configure.log"))
        log("build time: clean build of the library and CLI (-j2), minutes")
        times["clean_library_and_cli_seconds"] = timed(["cmake", "--build", folder, "-j2", "--target", "distillery_cli"],
                                                       os.path.join(work, "clean-build.log"))
        shutil.rmtree(folder, ignore_errors=True)
    if args.incremental_build:
        build = os.path.join(ROOT, args.build)
        timed(["cmake", "--build", build, "-j2", "--target", "distillery_cli"], os.path.join(work, "incremental-pre.log"))
        os.utime(os.path.join(ROOT, "src", "distill", "loss.cpp"))
        log("build time: one-file change (touch src/distill/loss.cpp, rebuild the CLI)")
        times["one_file_change_seconds"] = timed(["cmake", "--build", build, "-j2", "--target", "distillery_cli"],
                                                 os.path.join(work, "incremental-build.log"))
    return times


# ----------------------------------------------------------------------------------------------
# reports
# ----------------------------------------------------------------------------------------------

def fmt_rate(x):
    return f"{x:,.0f}"


def fmt_runs(values, spec="{:,.0f}"):
    return ", ".join(spec.format(v) for v in values)


def opt_rate(x, bold=False):
    if x is None:
        return "n/a"
    return f"**{fmt_rate(x)}**" if bold else fmt_rate(x)


def fmt_runs_opt(values):
    return "n/a" if None in values else fmt_runs(values)


def spread(values):
    return 100.0 * (max(values) / min(values) - 1.0) if values and min(values) > 0 else 0.0


def gflops(x):
    return f"{x / 1e9:.1f}"


def teacher_batches(pair):
    """distill.teacher_batches of a distillation pair's C++ runs; bench.json files written before it was
    recorded come from runs with its default, 10."""
    return (pair or {}).get("teacher_batches", 10)


def student_batch(pair):
    """train.batch of a distillation pair's C++ runs (the Python script's too); bench.json files written
    before it was recorded come from runs of the student config's 100."""
    return (pair or {}).get("batch", 100)


def main_distill_pair(figures):
    return figures.get("distill_e3") or next((figures[k] for k in sorted(figures) if k.startswith("distill_e")), None)


def write_markdown(path, report):
    m, figures = report["machine"], report["figures"]
    micro = figures.get("microbench", {}).get("results", {})
    limit = figures["gemm_limit_flops"]
    lines = [
        "# Benchmarks: distillery (C++) against plain PyTorch",
        "",
        f"Generated by `{report['command']}` (bench/run.py) on {report['date']}, revision {report['git_revision']}; "
        f"{report['seconds']:.0f} s in all. Do not edit by hand: rerun `make bench`.",
        "",
        f"Machine: {m['cpu']}, {m['nproc']} cores ({', '.join(m['simd']) or 'no AVX'}), {m['memory']} memory, "
        f"Linux {m['kernel']}; torch {m['torch']}; intra-op threads C++ {figures.get('threads', {}).get('cpp', '?')}, "
        f"Python {figures.get('threads', {}).get('python', '?')}; BLAS {m['blas']} with {m.get('blas_threads', '?')} threads.",
        f"Load average (1 min) before / after: {report['load_before'][0]:.1f} / {report['load_after'][0]:.1f} on "
        f"{m['nproc']} cores (a 1-minute average: before counts the minute before the bench, the build included; after, the bench's own last run). Jobs running beside the "
        "bench make absolute rates noisy; C++ and Python runs alternate (order flipped every repeat) so that the ratios see the same load.",
        "",
        f"Mode: {'quick (smoke test: ' + str(report['options']['limit']) + ' training images)' if report['options']['quick'] else 'full (60000 training images)'}, "
        f"{report['options']['repeats']} repeat(s) per side, medians reported.",
        "",
        "## Targets",
        "",
        "| measurement | target | measured | met |",
        "| --- | ---: | ---: | :---: |",
    ]
    for row in report["rows"]:
        if row["paper"] is None:
            continue
        met = row["ours"] >= row["paper"]
        unit = row["unit"]
        show = (lambda v: f"{v:.2f}x") if unit == "x" else (lambda v: f"{v:.1f}%")
        lines.append(f"| {row['what']} | {show(row['paper'])} | {show(row['ours'])} | {'yes' if met else '**no**'} |")

    lines += ["", "## Machine limit: matrix products", "",
              "| product | GFLOP/s | time |", "| --- | ---: | ---: |"]
    for n in (512, 1024):
        r = micro.get(f"BM_Gemm/{n}/real_time")
        if r:
            lines.append(f"| C++ torch::mm {n}x{n} fp32 (Google Benchmark) | {gflops(r['flops'])} | {r['seconds'] * 1e3:.2f} ms |")
    pg = figures.get("python_gemm_1024")
    if pg:
        lines.append(f"| Python torch.mm 1024x1024 fp32 (same library) | {gflops(pg['flops'])} | {pg['seconds'] * 1e3:.2f} ms |")
    rb = micro.get("BM_GemmBf16/1024/real_time")
    if rb and rb.get("flops"):
        lines.append(f"| C++ torch::mm 1024x1024 bf16, every core (the limit of train.precision=bf16: oneDNN with AVX512-BF16, "
                     f"emulated without) | "
                     f"{gflops(rb['flops'])} | {rb['seconds'] * 1e3:.2f} ms |")
    bw = micro.get("BM_MemoryCopy/256/real_time")
    if bw and bw.get("bytes_per_second"):
        lines.append(f"| memory bandwidth (copy of 256 MiB, read + write) | {bw['bytes_per_second'] / 1e9:.1f} GB/s | {bw['seconds'] * 1e3:.2f} ms |")
    lines += ["", f"The fp32 limit used below is the best of these fp32 figures: **{gflops(limit)} GFLOP/s**; bf16 runs are "
              "measured against the bf16 product.", ""]
    gm = figures.get("glom_memory")
    if gm:
        lines += ["## GLOM memory against the number of locations", "",
                  "Peak memory of the live tensors of one GLOM training step (B = 8, 3 levels x 32 dims, 5 iterations, "
                  "windowed attention of radii 1, 2, 3; forward, objective and backward), counted by a wrapping CPU allocator "
                  "(`BM_GlomStepMemory`): the allocator's caching and the library's footprint, which made the peak RSS of "
                  "earlier runs a poor measure, do not enter. Linear growth means the memory per location stays constant.", "",
                  "| grid | locations N | peak tensor memory | per location |", "| --- | ---: | ---: | ---: |"]
        for r in gm["sizes"]:
            lines.append(f"| {r['grid']}x{r['grid']} | {r['locations']} | {r['mib']:.0f} MiB | {1024 * r['mib'] / r['locations']:.0f} KiB |")
        lines += ["", gm["verdict"], ""]

    lines += ["## Micro-benchmarks (build/bench/distillery_microbench)", "",
              "Wall-clock time per call (Google Benchmark, `UseRealTime`: LibTorch and OpenBLAS use other threads). "
              f"Command: `{figures.get('microbench', {}).get('command', '-')}`. Debian's libbenchmark reports itself as a "
              "debug build; that concerns the timing harness only, the code measured is the Release (-O3) library.", "",
              "| benchmark | time per call | throughput |", "| --- | ---: | ---: |"]
    describe = {"BM_SoftTargetLoss/100/real_time": "soft_target_loss forward+backward, B=100, K=10, T=20",
                "BM_ShiftImages/100/real_time": "data::shift_images (+ random_shifts), B=100, 1x28x28, max shift 2",
                "BM_ReadIdxMnistTest/real_time": "data::read_idx, MNIST test images (7.8 MB)",
                "BM_TeacherCacheHit/100/real_time": "TeacherCache::soft_targets, full-batch hit, B=100",
                "BM_TeacherForward/100/real_time": "teacher soft targets computed (1200-1200 MLP forward), B=100",
                "BM_TeacherForward/1000/real_time": "the same on 1000 rows at once (distill.teacher_batches = 10)",
                "BM_ReluDropout/0/real_time": "ReLU + dropout (p 0.5) forward+backward, B=100, 1200 units: nn::fused_relu_dropout",
                "BM_ReluDropout/1/real_time": "the same as torch::dropout(torch::relu(x)) (as the Python scripts write it)",
                "BM_DynamicRouting/3/0/real_time": "dynamic routing forward+backward, B=64, 576 -> 10 capsules of 16D, 3 iterations (fused kernel)",
                "BM_DynamicRouting/3/1/real_time": "the same written op by op, differentiated by autograd",
                "BM_CapsNetStep/real_time": "quick CapsNet step without the optimizer (forward, margin + reconstruction loss, backward), B=32",
                "BM_ConsensusAttention/0/real_time": "GLOM consensus attention forward+backward, B=32, 14x14 grid, D=32, radius 2 (windowed, linear cost; fused kernel)",
                "BM_ConsensusAttention/1/real_time": "the same through the masked N x N matrix (dense path)",
                "BM_ConsensusAttention/2/real_time": "the same windowed attention written op by op, differentiated by autograd",
                "BM_GlomStep/28/real_time": "GLOM training step (forward, objective, backward), B=8, 7x7 grid",
                "BM_GlomStep/56/real_time": "the same, 14x14 grid",
                "BM_GlomStep/112/real_time": "the same, 28x28 grid",
                "BM_CodistillExchange/real_time": "co-distillation exchange in one process: flatten an 800-800 peer, load it into a stale copy",
                "BM_MemoryCopy/256/real_time": "memory bandwidth: copy 256 MiB of floats (bytes read + written)"}
    for key, what in describe.items():
        r = micro.get(key)
        if not r:
            continue
        if r.get("error"):
            lines.append(f"| {what} | error: {r['error']} | |")
            continue
        t = r["seconds"]
        tstr = f"{t * 1e6:.1f} us" if t < 1e-3 else f"{t * 1e3:.2f} ms"
        thr = f"{r['items_per_second']:,.0f} images/s" if r.get("items_per_second") else ""
        if r.get("bytes_per_second"):
            thr += f" ({r['bytes_per_second'] / 1e6:,.0f} MB/s)"
        lines.append(f"| {what} | {tstr} | {thr} |")
    lines.append("")

    def pair_table(title, pair, note):
        c, p = pair["cpp"], pair["python"]
        out = [f"## {title}", "", note, "",
               "| | C++ (`distillery`) | Python (plain PyTorch) |", "| --- | ---: | ---: |",
               f"| samples/s, training steps, median | {opt_rate(c['samples_per_second'], bold=pair['ratio_steps'])} | "
               f"{opt_rate(p['samples_per_second'], bold=pair['ratio_steps'])} |",
               f"| samples/s, training steps, each run | {fmt_runs_opt(c['samples_per_second_runs'])} | {fmt_runs_opt(p['samples_per_second_runs'])} |",
               f"| samples/s, whole loop (with epoch-end evaluation and checkpoint), median | "
               f"{opt_rate(c['samples_per_second_with_epoch_end'], bold=not pair['ratio_steps'])} | "
               f"{opt_rate(p['samples_per_second_with_epoch_end'], bold=not pair['ratio_steps'])} |",
               f"| samples/s, whole loop, each run | {fmt_runs(c['samples_per_second_with_epoch_end_runs'])} | "
               f"{fmt_runs(p['samples_per_second_with_epoch_end_runs'])} |",
               f"| ratio C++ / Python, training steps | {'**' + format(pair['ratio_steps'], '.2f') + 'x**' if pair['ratio_steps'] else 'n/a (this build reports the whole loop only)'} | |",
               f"| ratio C++ / Python, whole loop | {pair['ratio_with_epoch_end']:.2f}x | |",
               f"| ratio of the fastest runs (least disturbed by other jobs) | {pair['ratio_best']:.2f}x | |",
               f"| spread of the runs (max/min - 1) | {spread(c['samples_per_second_with_epoch_end_runs']):.0f}% | "
               f"{spread(p['samples_per_second_with_epoch_end_runs']):.0f}% |"]
        if c["test_errors"] is not None:
            out += [f"| test errors (of 10000), median | {c['test_errors']:.0f} | {p['test_errors']:.0f} |",
                    f"| test errors, each run | {fmt_runs(c['test_errors_runs'], '{}')} | {fmt_runs(p['test_errors_runs'], '{}')} |"]
        if "teacher_rows" in pair:
            out.append(f"| teacher forward rows / samples | {pair['teacher_rows']['cpp']:,} / {pair['samples']:,} | "
                       f"{pair['teacher_rows']['python']:,} / {pair['samples']:,} |")
        if "flops_per_sample" in c:
            # Older runs measured the Python side of the bf16 pairs without FLOP counts.
            def each(fmt_side):
                return " | ".join(fmt_side(side) if "flops_per_sample" in side else "n/a" for side in (c, p))
            out += [f"| model FLOP per training sample (estimate) | {each(lambda x: format(x['flops_per_sample'] / 1e6, '.2f') + ' M')} |",
                    f"| achieved GFLOP/s | {each(lambda x: gflops(x['flops']))} |",
                    f"| fraction of the GEMM limit | {each(lambda x: format(x['fraction_of_gemm'], '.0f') + '%')} |"]
        out += [f"| peak resident memory (max over runs) | {c['peak_rss_mib']:.0f} MiB | {p['peak_rss_mib']:.0f} MiB |", ""]
        return out

    lines += pair_table("MLP training epoch", figures["mlp"],
                        "784-1200-1200-10 ReLU MLP, dropout 0.2 (input) / 0.5 (hidden), max-norm 3.5, 2-pixel jitter, "
                        "SGD lr 0.1 momentum 0.9 with a cosine schedule, batch 100, 1 epoch. C++: `distillery train --config "
                        f"{TEACHER_CONFIG} --set train.epochs=1`; Python: bench/python/mlp_epoch.py. FLOP: 6 x "
                        f"{figures['mlp']['parameters']['model']:,} parameters per sample.")
    for key in sorted(k for k in figures if k.startswith("distill_e")):
        pair = figures[key]
        lines += pair_table(f"Distillation, {pair['epochs']} epoch(s)", pair,
                            "Teacher 784-1200-1200-10 (trained for the bench: 1 epoch of the MLP run above) -> student "
                            "784-800-800-10 without regularisation, 2-pixel jitter, T = 20, soft targets only, SGD lr 0.1 "
                            "momentum 0.9 cosine, batch 100. C++: `distillery distill --teacher <ckpt> --student "
                            f"{STUDENT_CONFIG} --set train.epochs={pair['epochs']}` (teacher cache on, its default); "
                            f"Python: bench/python/distill_epoch.py --epochs {pair['epochs']} (teacher on every batch). "
                            f"FLOP: 6 x {pair['parameters']['student']:,} (student) per sample + 2 x "
                            f"{pair['parameters']['teacher']:,} (teacher) per row the teacher actually ran on.")

    for py_precision in ("fp32", "bf16"):
        pair = figures.get(f"bf16_vs_python_{py_precision}")
        if pair:
            lines += pair_table(f"Distillation, {pair['epochs']} epochs: distillery in bf16 mixed precision against Python in {py_precision}", pair,
                                "The distillation above, with `--set train.precision=bf16` on the C++ side: the teacher's forward "
                                "pass and the student's matrix products run in bfloat16 under LibTorch's CPU autocast (oneDNN's "
                                "AVX512-BF16 kernels; the teacher on bf16 copies of its weights made once, where autocast would "
                                "cast them on every batch), weights, optimizer and losses in fp32, evaluation in fp32; under bf16 "
                                f"distillery gives LibTorch's intra-op pool every core ({os.cpu_count()}; train.threads=0). Python: "
                                f"bench/python/distill_epoch.py --precision {py_precision}"
                                + (f" --threads {os.cpu_count()} (torch.autocast('cpu', bfloat16) around both forward passes, "
                                   "which casts the frozen teacher's weights again on every batch; the same threads)." if py_precision == "bf16" else
                                   " (fp32 and torch's default threads, as a plain script is written)."))
    if "capsnet" in figures:
        lines += pair_table("CapsNet training epoch", figures["capsnet"],
                            f"configs/capsnet/quick.yaml (Conv 128 9x9, 16 primary capsule types, 10 x 16D class capsules, 3 routing "
                            f"iterations, reconstruction decoder), 1 epoch on {figures['capsnet']['samples']:,} images, Adam, batch 32, no shifts. "
                            "C++: `distillery train --config configs/capsnet/quick.yaml`; Python: bench/python/capsnet_epoch.py.")
    if "glom" in figures:
        lines += pair_table("GLOM training steps", figures["glom"],
                            "GLOM with 3 levels x 32 dims, 5 iterations, 4x4 patches with 4 pixels of context on 56 x 56 images "
                            "(14 x 14 locations), windowed consensus attention (radii 1, 2, 3), B = 8; a step is the forward pass, "
                            "the whole objective (denoising, island regulariser, InfoNCE, image labels) and the backward pass, no "
                            "optimizer. C++: `distillery_microbench --benchmark_filter=BM_GlomStep/56/` (nn::Glom, nn::glom_loss); "
                            "Python: bench/python/glom_steps.py, the same model written in plain PyTorch. No test errors: the "
                            "images are random.")
    if "codistill" in figures:
        c = figures["codistill"]["settings"]
        lines += pair_table("Co-distillation, 2 peers in one process", figures["codistill"],
                            f"Two 800-800 MLP peers, each on its own half of {figures['codistill']['samples'] // c['epochs'] :,} "
                            f"samples per epoch, {c['epochs']} epochs, SGD lr 0.1 momentum 0.9 cosine, batch 100; after a burn-in of "
                            f"{c['burn_in']} steps each adds alpha {c['alpha']} x KL at T = {c['temperature']} to a stale copy of the "
                            f"other, refreshed every {c['exchange_every']} steps. Rates count the samples of both peers over the "
                            "whole loop (each epoch ends with a test evaluation of every peer); test errors are the peers' mean. "
                            f"C++: `distillery codistill --config {CODISTILL_CONFIG} --peers 2`; Python: bench/python/codistill_steps.py.")

    tv = figures.get("teacher_check")
    if tv:
        lines += ["Teacher checkpoint read by Python through torch.jit.load: "
                  f"{tv['python_errors']} test errors in Python vs {tv['cpp_errors']} in C++ "
                  f"({'same' if tv['python_errors'] == tv['cpp_errors'] else 'DIFFERENT'}).", ""]

    bt = figures.get("build_times", {})
    if bt:
        lines += ["## Build time", "", "| build | seconds |", "| --- | ---: |"]
        if "clean_library_and_cli_seconds" in bt:
            lines.append(f"| clean build of the library and CLI (`-j2`, fresh build folder) | {bt['clean_library_and_cli_seconds']:.0f} |")
        if "one_file_change_seconds" in bt:
            lines.append(f"| one-file change (`touch src/distill/loss.cpp`, rebuild the CLI, `-j2`) | {bt['one_file_change_seconds']:.0f} |")
        if "clean_library_and_cli_seconds" not in bt:
            lines.append("| clean build | not measured (`bench/run.py --clean-build`) |")
        lines.append("")
        if bt.get("date"):
            lines += [f"Measured apart from the pairs by `/usr/bin/python3 bench/run.py --build-times-only` on {bt['date']} "
                      f"(load average before: {bt.get('load_before', ['?'])[0]}); a clean build compiles the precompiled "
                      "header first, then every translation unit against it.", ""]

    lines += ["## What both sides do", "",
              "Same model, initial learning rate, momentum, cosine schedule over the run, batch size, jitter, dropout "
              "and max-norm after every step, on the same torch build "
              "(Debian's libtorch 1.13 under both). At each epoch end both sides evaluate on the test set and write a "
              "checkpoint (model and optimizer state, to a temporary file then renamed): the CLI always does, the Python "
              "scripts do by default (`--epoch-end`). Where the sides compute the same result differently: dropout "
              "(Python: F.dropout after F.relu, a float Bernoulli mask from one mt19937 draw per element and two "
              "multiplies; distillery: ReLU and dropout fused in one pass, keep decisions from a counter-based hash, a "
              "byte mask for backward), the SGD update (Python: torch.optim.SGD, three passes per parameter and "
              "gradients zeroed in place; distillery: one pass, the same rule, gradients dropped before each step), jitter "
              "(Python pads, then gathers twice; distillery copies rows in one pass), max-norm (Python: torch.renorm "
              "then copy_; distillery reads the row norms once and rescales only the rows that are too long), a "
              "teacher under bf16 autocast (Python: autocast casts its weights on every batch; distillery keeps bf16 "
              "copies), dynamic routing and GLOM's windowed consensus (Python: op by op with autograd; distillery: "
              "fused kernels with hand-written backward passes). Two rates per side: *training steps* times each step from taking "
              "the batch (index, jitter) to the end of the update and max-norm, as distillery's result.json "
              "`samples_per_second` does; *whole loop* is all samples over the whole loop's seconds, epoch ends included "
              "(C++: result.json `seconds`). The headline ratio uses the training-steps rates "
              "when the C++ build reports them, else the whole loop. FLOP/s figures use the headline rate. Data loading, "
              "model construction and the final evaluation are outside both timings on both sides. "
              "Differences: random streams (seeds, shuffling, shift draws) are not the same numbers, so test errors differ "
              "by run-to-run noise; the C++ trainer reads the loss value every step (`loss.item()`) to stop on a "
              "non-finite loss; in distillation distillery caches the teacher's soft targets per (image, shift) and runs "
              f"the teacher ahead on {teacher_batches(main_distill_pair(figures))} batches at once, the Python script runs the teacher on every batch; the distillery "
              "command keeps freed memory for the next step (glibc's mmap and trim thresholds raised), the Python "
              "scripts keep glibc's defaults.", ""]

    lines += ["## Where the time goes", ""] + report["analysis"] + [""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def analysis_lines(figures, blas_threads):
    """Plain statements computed from the figures: targets met or missed, and why."""
    out = []
    limit = figures["gemm_limit_flops"]
    mlp = figures["mlp"]
    micro_results = figures.get("microbench", {}).get("results", {})
    fused_rd, torch_rd = (micro_results.get(f"BM_ReluDropout/{a}/real_time", {}).get("seconds") for a in (0, 1))
    relu_dropout = (f"{fused_rd * 1e3:.2f} ms against {torch_rd * 1e3:.2f} ms for torch::dropout(torch::relu(x))"
                    if fused_rd and torch_rd else "see the micro-benchmarks")
    pm = mlp["python"]["fraction_of_gemm"]
    out.append(f"- **MLP epoch**: C++ runs at {mlp['ratio']:.2f}x Python ({mlp['ratio_basis']}; whole loop "
               f"{mlp['ratio_with_epoch_end']:.2f}x; target 1.2x: "
               f"{'met' if mlp['ratio'] >= TARGETS['mlp_ratio'] else 'missed by ' + format((TARGETS['mlp_ratio'] - mlp['ratio']) / TARGETS['mlp_ratio'] * 100, '.0f') + '%'}). "
               f"Both sides execute the same matrix-product kernels; distillery's dropout and SGD update are fused "
               f"(ReLU + dropout on one 100 x 1200 layer, forward and backward: {relu_dropout}). Plain PyTorch reaches {pm:.0f}% of the "
               f"{gflops(limit)} GFLOP/s GEMM limit and C++ {mlp['cpp']['fraction_of_gemm']:.0f}%; even a C++ side at 100% "
               f"of the limit would be only {100.0 / pm:.2f}x Python. The rest of the gap to the limit is shared by both "
               "sides: the matrices of a batch-100 step (100x784 by 784x1200, 100x1200 by 1200x1200 and their "
               "transposes) are smaller than the 512/1024 squares of the limit, and dropout, ReLU, jitter, max-norm "
               "and the optimizer update are element-wise passes over memory.")
    if "capsnet" in figures:
        cap = figures["capsnet"]
        verdict = ("met" if cap["ratio"] >= TARGETS["capsnet_ratio"] else
                   f"missed by {(TARGETS['capsnet_ratio'] - cap['ratio']) / TARGETS['capsnet_ratio'] * 100:.0f}%")
        line = (f"- **CapsNet epoch**: C++ {cap['ratio']:.2f}x Python ({cap['ratio_basis']}; target 1.1x: {verdict}). "
                "Both sides run the same convolution kernels (oneDNN), which take most of a step; the difference is "
                "dynamic routing, which distillery runs as one fused kernel per image with a hand-written backward pass")
        micro = figures.get("microbench", {}).get("results", {})
        fused, op_by_op = micro.get("BM_DynamicRouting/3/0/real_time"), micro.get("BM_DynamicRouting/3/1/real_time")
        step = micro.get("BM_CapsNetStep/real_time")
        if fused and op_by_op and step:
            per_image = lambda r, batch: r["seconds"] / batch * 1e3
            line += (f": {per_image(fused, 64):.2f} ms per image forward and backward against {per_image(op_by_op, 64):.2f} ms "
                     f"written op by op with autograd (as the Python script does), in a step of "
                     f"{per_image(step, 32):.2f} ms per image")
        out.append(line + ".")
    for key in sorted(k for k in figures if k.startswith("distill_e")):
        d = figures[key]
        c, p = d["cpp"], d["python"]
        saved = 1.0 - d["teacher_rows"]["cpp"] / max(d["samples"], 1)
        ahead, batch = teacher_batches(d), student_batch(d)
        teacher_share = 2.0 * d["parameters"]["teacher"] / p["flops_per_sample"]
        bound_cache = 1.0 / (1.0 - saved * teacher_share) if saved * teacher_share < 1 else float("inf")
        verdict = ("met" if d["ratio"] >= TARGETS["distill_ratio"] else
                   f"missed: {d['ratio']:.2f}x is {(TARGETS['distill_ratio'] - d['ratio']) / TARGETS['distill_ratio'] * 100:.0f}% short")
        out.append(
            f"- **Distillation, {d['epochs']} epoch(s)**: C++ {d['ratio']:.2f}x Python ({d['ratio_basis']}; whole loop "
            f"{d['ratio_with_epoch_end']:.2f}x; target 2x: {verdict}). "
            f"The teacher's forward pass is {teacher_share * 100:.0f}% of Python's model FLOP per sample. The cache "
            f"spared the teacher {saved * 100:.1f}% of its rows ({d['teacher_rows']['cpp']:,} of {d['samples']:,} ran): "
            f"with 2-pixel jitter there are 25 shifted versions of each image, so in epoch e only about (e-1)/25 of the "
            f"(image, shift) pairs drawn were seen before; work saved by the cache alone bounds the ratio at "
            f"{bound_cache:.2f}x for equal kernel speed. distillery runs the teacher once per {ahead} batches on all their "
            f"rows (`distill.teacher_batches`: each step's batch is known ahead), so its products have {ahead * batch:,} rows "
            f"instead of {batch}, which OpenBLAS runs faster per row (`BM_TeacherForward/100` against `/1000` above). Python reaches {p['fraction_of_gemm']:.0f}% of the GEMM limit, "
            f"C++ {c['fraction_of_gemm']:.0f}%.")
    if "distill_e1" in figures:
        d = figures["distill_e1"]
        out.append(f"- In the 1-epoch distillation the cache cannot hit (every (image, shift) is new), so both sides do the "
                   f"same arithmetic and its ratio, {d['ratio']:.2f}x, like the MLP epoch's {mlp['ratio']:.2f}x, compares the "
                   "two front ends, the teacher's larger products included.")
    spreads = [spread(figures[k][side]["samples_per_second_with_epoch_end_runs"]) for k in figures
               if k == "mlp" or k.startswith("distill_e") for side in ("cpp", "python")]
    if spreads:
        bests = ", ".join(f"{'MLP' if k == 'mlp' else str(figures[k]['epochs']) + '-epoch distillation'} "
                          f"{figures[k]['ratio_best']:.2f}x" for k in figures if k == "mlp" or k.startswith("distill_e"))
        out.append(f"- Noise: the repeats of one side differ by up to {max(spreads):.0f}% (max/min of the whole-loop rates), "
                   "from other jobs on the cores and the machine's own variation; differences smaller than that between C++ and "
                   f"Python are not significant. Other jobs only slow a run down, so the fastest run of each side is the least "
                   f"disturbed: their ratios are {bests}.")
    if "distill_e3" in figures:
        c = figures["distill_e3"]["cpp"]
        out.append(f"- **Student GEMM fraction** (C++ distillation, 3 epochs): {c['fraction_of_gemm']:.0f}% of the GEMM "
                   f"limit (target 60%: {'met' if c['fraction_of_gemm'] >= TARGETS['student_gemm_fraction'] else 'missed'}). "
                   "The FLOP count is the usual 6 x parameters per trained sample (2 forward, 4 backward) plus 2 x teacher "
                   "parameters per teacher row over the " + figures["distill_e3"]["ratio_basis"] + " rate; it slightly "
                   "overstates the work (no gradient is needed for the input layer's input).")
    th = figures.get("threads", {})
    if "distill_e3" in figures:
        d = figures["distill_e3"]
        share = 2.0 * d["parameters"]["teacher"] / d["python"]["flops_per_sample"]
        shifts = 25  # (2 * jitter + 1)^2 with jitter 2
        for epochs in (60,):
            rows_fraction = shifts * (1.0 - (1.0 - 1.0 / shifts) ** epochs) / epochs  # expected distinct (image, shift) per draw
            bound = 1.0 / (1.0 - (1.0 - rows_fraction) * share)
            out.append(f"- Even over the paper's {epochs} epochs the teacher would still run on about {rows_fraction * 100:.0f}% "
                       f"of the rows (25 shifts per image), so the cache alone bounds the distillation ratio at about "
                       f"{bound:.2f}x; the 2x target cannot come from the cache on this workload.")
    out.append(f"- LibTorch runs with {th.get('cpp', '?')} intra-op thread(s) in C++ and {th.get('python', '?')} in Python "
               f"(its default on this machine) while OpenBLAS runs matrix products on its own {blas_threads} threads, so element-wise work (dropout masks, ReLU, jitter, "
               "max-norm, the optimizer update) is single-threaded on both sides. In fp32 the C++ side wins what Python "
               "spends outside the kernels plus its fused dropout and SGD update and cheaper jitter and max-norm; the "
               "distilled student has no dropout, and a ratio such as 2x would need it to do much less arithmetic than "
               "the Python script, and the teacher cache, bounded above, saves little here."
               + (" In bf16 (the pairs above) the products run at bf16 speed on every core and the teacher's weights are "
                  "cast once, not per batch." if any(k.startswith("bf16_vs_python") for k in figures) else
                  " bf16 pairs were not run (--bf16-epochs 0): without AVX512-BF16 LibTorch emulates bf16 products."))
    return out


# ----------------------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=None, help="runs per side of each pair (default 3; quick: 1)")
    parser.add_argument("--quick", action="store_true", help="10000 training images, 1 repeat, no build timing")
    parser.add_argument("--smoke", action="store_true",
                        help="every phase at toy sizes (a minute or two; `make test` runs it): checks that the bench runs, "
                             "measures nothing worth keeping; implies --quick, writes only under the work folder")
    parser.add_argument("--limit", type=int, default=None, help="training images (default all; quick: 10000)")
    parser.add_argument("--distill-epochs", default="1,3", help="distillation pairs to run (comma-separated epochs)")
    parser.add_argument("--bf16-epochs", type=int, default=3,
                        help="epochs of the bf16 mixed-precision distillation pairs (0: skip them)")
    parser.add_argument("--capsnet-limit", type=int, default=3000,
                        help="training images of the CapsNet pair (configs/capsnet/quick.yaml, 1 epoch; 0: skip it)")
    parser.add_argument("--codistill-limit", type=int, default=20000,
                        help="training images of the 2-peer co-distillation pair (half per peer; 0: skip it)")
    parser.add_argument("--glom", action=argparse.BooleanOptionalAction, default=True, help="run the GLOM training-steps pair")
    parser.add_argument("--build", default="build", help="CMake build folder (relative to the repository)")
    parser.add_argument("--work", default=None, help="scratch folder (default BUILD/bench-work[-quick])")
    parser.add_argument("--json", default=None, help="results file (default docs/results/bench.json; quick: in the work folder)")
    parser.add_argument("--md", default=None, help="report page (default docs/BENCH.md; quick: in the work folder)")
    parser.add_argument("--no-micro", action="store_true", help="skip the Google Benchmark micro-benchmarks")
    parser.add_argument("--clean-build", action="store_true", help="also time a clean build of the library (minutes)")
    parser.add_argument("--incremental-build", action=argparse.BooleanOptionalAction, default=None,
                        help="time a one-file change (default on; off with --quick)")
    parser.add_argument("--build-times-only", action="store_true",
                        help="time a clean build and a one-file change, add them to the existing results file, re-render")
    parser.add_argument("--render-only", action="store_true",
                        help="measure nothing: rebuild rows and the page from the existing results file")
    args = parser.parse_args()
    if args.render_only or args.build_times_only:
        json_path = args.json or os.path.join(ROOT, "docs", "results", "bench.json")
        with open(json_path) as f:
            report = json.load(f)
        if args.build_times_only:
            args.clean_build = args.incremental_build = True
            work = args.work or os.path.join(ROOT, args.build, "bench-work")
            os.makedirs(work, exist_ok=True)
            report["figures"]["build_times"] = {**build_times(args, work), "machine": machine_description(),
                                                "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                                                "load_before": load_average()}
        finish(report, json_path, args.md or os.path.join(ROOT, "docs", "BENCH.md"))
        return
    if args.smoke:
        args.quick = True
        args.limit = args.limit or 1000
        args.distill_epochs, args.bf16_epochs, args.capsnet_limit, args.codistill_limit = "1", 1, 200, 1000
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.limit = args.limit if args.limit is not None else (10000 if args.quick else 0)
    if args.incremental_build is None:
        args.incremental_build = not args.quick
    work = os.path.abspath(args.work or os.path.join(ROOT, args.build, "bench-work-smoke" if args.smoke else
                                                     "bench-work-quick" if args.quick else "bench-work"))
    json_path = args.json or (os.path.join(work, "bench.json") if args.quick else os.path.join(ROOT, "docs", "results", "bench.json"))
    md_path = args.md or (os.path.join(work, "BENCH.md") if args.quick else os.path.join(ROOT, "docs", "BENCH.md"))
    shutil.rmtree(os.path.join(work, "runs"), ignore_errors=True)
    os.makedirs(os.path.join(work, "runs"), exist_ok=True)
    os.chdir(ROOT)

    started = time.perf_counter()
    report = {"experiment": "bench", "title": "Speed: distillery (C++) against plain PyTorch (make bench)",
              "profile": "quick" if args.quick else "full",
              "command": os.environ.get("DISTILLERY_BENCH_COMMAND") or "/usr/bin/python3 bench/run.py " + " ".join(sys.argv[1:]),
              "git_revision": git_revision(), "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "machine": machine_description(), "load_before": load_average(),
              "options": {"repeats": args.repeats, "quick": args.quick, "limit": args.limit}}
    log(f"machine: {report['machine']['cpu']}, {report['machine']['nproc']} cores; load {report['load_before']}; work {work}")
    figures = {}

    # 1. machine limit and micro-benchmarks
    if not args.no_micro:
        figures["microbench"] = run_microbench(args, work)
        figures["glom_memory"] = glom_memory(args, work)
    figures["python_gemm_1024"] = python_gemm(1024)
    log(f"GEMM limit {gflops(fp32_gemm_limit(figures))} GFLOP/s")

    # 2a. MLP epoch; the first C++ run's checkpoint is the distillation teacher
    teacher_params = mlp_parameters([1200, 1200])
    student_params = mlp_parameters([800, 800])
    cpp, py = alternate(args.repeats, lambda r: cpp_train(args, work, f"mlp-cpp-{r}"),
                        lambda r: py_script(args, work, f"mlp-py-{r}", "mlp_epoch.py", ["--epochs", "1"]), "MLP epoch")
    teacher = os.path.join(work, "teacher.pt")
    shutil.copyfile(cpp[0]["checkpoint"], teacher)
    assert cpp[0]["parameters"] == teacher_params and py[0]["parameters"] == teacher_params, "MLP parameter counts differ"
    mlp = {"cpp": summarize(cpp), "python": summarize(py), "parameters": {"model": teacher_params}}
    add_ratios(mlp)
    add_flops(mlp["cpp"], 6.0 * teacher_params)
    add_flops(mlp["python"], 6.0 * teacher_params)
    figures["mlp"] = mlp
    gemm_threads = figures.get("microbench", {}).get("results", {}).get("BM_Gemm/1024/real_time", {}).get("threads")
    figures["threads"] = {"cpp": int(gemm_threads) if gemm_threads else None, "python": py[0]["threads"]}
    figures["teacher"] = {"source": "C++ MLP run 1 (1 epoch of " + TEACHER_CONFIG + ")", "test_errors": cpp[0]["test_errors"]}
    log(f"MLP epoch ratio {mlp['ratio']:.2f}x")

    # 2b. distillation
    for epochs in [int(e) for e in args.distill_epochs.split(",") if e]:
        cpp, py = alternate(args.repeats, lambda r: cpp_distill(args, work, f"distill-e{epochs}-cpp-{r}", teacher, epochs),
                            lambda r: py_script(args, work, f"distill-e{epochs}-py-{r}", "distill_epoch.py",
                                                ["--teacher", teacher, "--epochs", str(epochs)]),
                            f"distill {epochs} epoch(s)")
        assert cpp[0]["parameters"] == student_params and py[0]["parameters"] == student_params, "student sizes differ"
        if "teacher_check" not in figures:
            figures["teacher_check"] = {"cpp_errors": figures["teacher"]["test_errors"], "python_errors": py[0]["teacher_errors"]}
        pair = distill_pair(epochs, cpp, py, student_params, teacher_params)
        figures[f"distill_e{epochs}"] = pair
        log(f"distillation {epochs} epoch(s) ratio {pair['ratio']:.2f}x")

    # 2b'. distillation with bf16 mixed precision in distillery (train.precision=bf16, which by
    # default gives LibTorch's pool every core), against plain fp32 Python as written (torch's
    # default threads) and against Python with bf16 autocast and the same thread count (the same
    # number format and threads: the front ends alone).
    if args.bf16_epochs > 0:
        epochs = args.bf16_epochs
        for py_precision in ("fp32", "bf16"):
            cpp, py = alternate(args.repeats,
                                lambda r: cpp_distill(args, work, f"distill-bf16-py{py_precision}-cpp-{r}", teacher, epochs, "bf16"),
                                lambda r: py_script(args, work, f"distill-bf16-py{py_precision}-py-{r}", "distill_epoch.py",
                                                    ["--teacher", teacher, "--epochs", str(epochs), "--precision", py_precision]
                                                    + (["--threads", str(os.cpu_count())] if py_precision == "bf16" else [])),
                                f"distill bf16 vs Python {py_precision}")
            pair = distill_pair(epochs, cpp, py, student_params, teacher_params)
            pair["precision"] = {"cpp": "bf16", "python": py_precision}
            figures[f"bf16_vs_python_{py_precision}"] = pair
            log(f"distillation, C++ bf16 vs Python {py_precision}: {pair['ratio']:.2f}x")

    # 2c. CapsNet epoch (routing, margin and reconstruction losses): same network and loop in Python
    if args.capsnet_limit > 0:
        cpp, py = alternate(args.repeats, lambda r: cpp_capsnet(args, work, f"capsnet-cpp-{r}"),
                            lambda r: py_capsnet(args, work, f"capsnet-py-{r}"), "CapsNet epoch")
        assert cpp[0]["parameters"] == py[0]["parameters"], "CapsNet parameter counts differ"
        capsnet = {"cpp": summarize(cpp), "python": summarize(py), "samples": args.capsnet_limit,
                   "parameters": {"model": cpp[0]["parameters"]}}
        add_ratios(capsnet)
        figures["capsnet"] = capsnet
        log(f"CapsNet epoch ratio {capsnet['ratio']:.2f}x")

    # 2d. co-distillation, 2 peers in one process: same peers, loss and exchange in Python
    if args.codistill_limit > 0:
        cpp, py = alternate(args.repeats, lambda r: cpp_codistill(args, work, f"codistill-cpp-{r}"),
                            lambda r: py_codistill(args, work, f"codistill-py-{r}"), "co-distillation")
        assert cpp[0]["parameters"] == py[0]["parameters"], "peer parameter counts differ"
        codistill = {"cpp": summarize(cpp), "python": summarize(py), "samples": cpp[0]["samples"],
                     "settings": CODISTILL_SETTINGS, "parameters": {"peer": cpp[0]["parameters"]}}
        add_ratios(codistill)
        figures["codistill"] = codistill
        log(f"co-distillation ratio {codistill['ratio']:.2f}x")

    # 2e. GLOM training steps: the same model and objective written in Python
    if args.glom:
        cpp, py = alternate(args.repeats, lambda r: cpp_glom(args, work, f"glom-cpp-{r}"),
                            lambda r: py_glom(args, work, f"glom-py-{r}"), "GLOM steps")
        assert cpp[0]["parameters"] == py[0]["parameters"], "GLOM parameter counts differ"
        glom = {"cpp": summarize(cpp), "python": summarize(py), "parameters": {"model": cpp[0]["parameters"]}}
        add_ratios(glom)
        figures["glom"] = glom
        log(f"GLOM steps ratio {glom['ratio']:.2f}x")

    # 2f. build times
    if args.incremental_build or args.clean_build:
        figures["build_times"] = build_times(args, work)

    report["load_after"] = load_average()
    report["seconds"] = time.perf_counter() - started
    report["figures"] = figures
    for run in [r for k in figures if k == "mlp" or k.startswith("distill_e") for side in ("cpp", "python") for r in figures[k][side]["runs"]]:
        run.pop("checkpoint", None)
    # The checkpoints were only written because both sides write one per epoch; keep logs, metrics and the teacher.
    for folder, _, files in os.walk(work):
        for name in files:
            if name.endswith(".pt") and os.path.join(folder, name) != teacher:
                os.remove(os.path.join(folder, name))
    # The measurements first, so that a failure in rendering loses nothing (--render-only redoes it).
    os.makedirs(os.path.dirname(json_path), exist_ok=True)
    with open(json_path, "w") as f:
        json.dump(report, f, indent=2)
    finish(report, json_path, md_path)


def fp32_gemm_limit(figures):
    """The machine's fp32 GEMM limit: the best product measured, from C++ or from Python (the same library)."""
    results = figures.get("microbench", {}).get("results", {})
    measured = [r["flops"] for k, r in results.items() if k.startswith("BM_Gemm/") and r.get("flops")]
    if figures.get("python_gemm_1024", {}).get("flops"):
        measured.append(figures["python_gemm_1024"]["flops"])
    return max(measured)


def finish(report, json_path, md_path):
    """Rows, analysis and notes from the figures; writes the results file and the page."""
    figures = report["figures"]
    # Every side's fraction of the limit of its number format: the best fp32 product measured, or the
    # bf16 product for the C++ side of the bf16 pairs.
    figures["gemm_limit_flops"] = fp32_gemm_limit(figures)
    figures["gemm_limit_bf16_flops"] = (figures.get("microbench", {}).get("results", {})
                                        .get("BM_GemmBf16/1024/real_time", {}).get("flops"))
    for key, pair in figures.items():
        for side in ("cpp", "python"):
            if not (isinstance(pair, dict) and isinstance(pair.get(side), dict) and "flops" in pair[side]):
                continue
            bf16 = pair.get("precision", {}).get(side) == "bf16"
            side_limit = figures["gemm_limit_bf16_flops"] if bf16 else figures["gemm_limit_flops"]
            if side_limit:
                pair[side]["fraction_of_gemm"] = 100.0 * pair[side]["flops"] / side_limit
    mlp, limit = figures["mlp"], figures["gemm_limit_flops"]
    for pair in [v for v in figures.values() if isinstance(v, dict) and isinstance(v.get("cpp"), dict) and isinstance(v.get("python"), dict)]:
        pair["ratio_best"] = best_ratio(pair)
    rows = []
    main_distill = main_distill_pair(figures)
    if main_distill:
        rows.append({"id": "distill_ratio", "what": f"distillation, {main_distill['epochs']} epochs: C++ / Python samples/s",
                     "paper": TARGETS["distill_ratio"], "ours": round(main_distill["ratio"], 3), "unit": "x"})
    for key in sorted(k for k in figures if k.startswith("distill_e")):
        if figures[key] is main_distill:
            continue
        rows.append({"id": f"distill_ratio_{key[8:]}", "what": f"distillation, {figures[key]['epochs']} epoch(s): C++ / Python samples/s",
                     "paper": None, "ours": round(figures[key]["ratio"], 3), "unit": "x"})
    for py_precision in ("fp32", "bf16"):
        pair = figures.get(f"bf16_vs_python_{py_precision}")
        if not pair:
            continue
        against = "plain fp32 Python (the script as written)" if py_precision == "fp32" else "Python with bf16 autocast (same number format)"
        rows.append({"id": f"distill_bf16_ratio_vs_{py_precision}",
                     "what": f"distillation, {pair['epochs']} epochs, distillery with train.precision=bf16 / {against}: samples/s",
                     "paper": TARGETS["distill_ratio"] if py_precision == "fp32" else None, "ours": round(pair["ratio"], 3), "unit": "x"})
        rows.append({"id": f"distill_bf16_errors_vs_{py_precision}",
                     "what": f"  test errors, distillery bf16 minus Python {py_precision} ({pair['cpp']['test_errors']:.0f} - "
                             f"{pair['python']['test_errors']:.0f}, medians; run-to-run noise is about 10)", "paper": None,
                     "ours": int(round(pair["cpp"]["test_errors"] - pair["python"]["test_errors"])), "unit": "errors"})
    if "capsnet" in figures:
        rows.append({"id": "capsnet_ratio", "what": f"CapsNet training epoch ({figures['capsnet']['samples']} images, "
                     f"configs/capsnet/quick.yaml): C++ / Python samples/s", "paper": TARGETS["capsnet_ratio"],
                     "ours": round(figures["capsnet"]["ratio"], 3), "unit": "x"})
    if "glom" in figures:
        rows.append({"id": "glom_ratio", "what": "GLOM training steps (B = 8, 14 x 14 locations, forward + objective + backward): "
                     "C++ / Python images/s", "paper": TARGETS["glom_ratio"], "ours": round(figures["glom"]["ratio"], 3), "unit": "x"})
    if "codistill" in figures:
        c = figures["codistill"]
        rows.append({"id": "codistill_ratio", "what": f"co-distillation, 2 peers x {c['samples'] // 2:,} samples "
                     f"(configs/codistill/mlp-2peers.yaml): C++ / Python samples/s", "paper": None,
                     "ours": round(c["ratio"], 3), "unit": "x"})
    rows.append({"id": "mlp_ratio", "what": "MLP training epoch: C++ / Python samples/s", "paper": TARGETS["mlp_ratio"],
                 "ours": round(mlp["ratio"], 3), "unit": "x"})
    if main_distill:
        rows.append({"id": "student_gemm_fraction",
                     "what": f"C++ distillation ({main_distill['epochs']} epochs): achieved FLOP/s, % of GEMM limit",
                     "paper": TARGETS["student_gemm_fraction"], "ours": round(main_distill["cpp"]["fraction_of_gemm"], 1), "unit": "%"})
    bf16_pair = figures.get("bf16_vs_python_fp32")
    if bf16_pair and "fraction_of_gemm" in bf16_pair["cpp"]:
        rows.append({"id": "student_gemm_fraction_bf16",
                     "what": f"C++ distillation in bf16 ({bf16_pair['epochs']} epochs): achieved FLOP/s, % of the bf16 GEMM limit "
                     f"({gflops(figures['gemm_limit_bf16_flops'])} GFLOP/s, every core)",
                     "paper": TARGETS["student_gemm_fraction"], "ours": round(bf16_pair["cpp"]["fraction_of_gemm"], 1), "unit": "%"})
    rows.append({"id": "mlp_gemm_fraction", "what": "C++ MLP epoch: achieved FLOP/s, % of GEMM limit", "paper": None,
                 "ours": round(mlp["cpp"]["fraction_of_gemm"], 1), "unit": "%"})
    if "glom_memory" in figures:
        gm = figures["glom_memory"]
        rows.append({"id": "glom_memory_growth", "what": f"GLOM training step, peak tensor memory growth from {gm['largest_locations'] // 4} to "
                     f"{gm['largest_locations']} locations (linear: 4x, quadratic: 16x)",
                     "paper": None, "ours": round(figures["glom_memory"]["growth_4x_locations"], 2), "unit": "x"})
    bw = figures.get("microbench", {}).get("results", {}).get("BM_MemoryCopy/256/real_time", {})
    if bw.get("bytes_per_second"):
        rows.append({"id": "memory_bandwidth", "what": "memory bandwidth (copy, read + write), GB/s", "paper": None,
                     "ours": round(bw["bytes_per_second"] / 1e9, 1), "unit": "GB/s"})
    rows.append({"id": "gemm_gflops", "what": "GEMM limit (torch::mm fp32, best of C++ 512 and 1024 and Python 1024), GFLOP/s", "paper": None,
                 "ours": round(limit / 1e9, 1), "unit": "GFLOP/s"})
    rows.append({"id": "mlp_errors_cpp", "what": "MLP epoch test errors, C++", "paper": None,
                 "ours": mlp["cpp"]["test_errors"], "unit": "errors"})
    rows.append({"id": "mlp_errors_python", "what": "MLP epoch test errors, Python", "paper": None,
                 "ours": mlp["python"]["test_errors"], "unit": "errors"})
    if main_distill:
        rows.append({"id": "distill_errors_cpp", "what": f"distilled student test errors ({main_distill['epochs']} epochs), C++",
                     "paper": None, "ours": main_distill["cpp"]["test_errors"], "unit": "errors"})
        rows.append({"id": "distill_errors_python", "what": f"distilled student test errors ({main_distill['epochs']} epochs), Python",
                     "paper": None, "ours": main_distill["python"]["test_errors"], "unit": "errors"})
        rows.append({"id": "distill_peak_rss_cpp", "what": "distillation peak memory, C++ (MiB)", "paper": None,
                     "ours": round(main_distill["cpp"]["peak_rss_mib"]), "unit": "MiB"})
        rows.append({"id": "distill_peak_rss_python", "what": "distillation peak memory, Python (MiB)", "paper": None,
                     "ours": round(main_distill["python"]["peak_rss_mib"]), "unit": "MiB"})
    for row in rows:  # integers for whole numbers so the results page prints them plainly
        if isinstance(row["ours"], float) and row["unit"] in ("errors", "MiB"):
            row["ours"] = int(round(row["ours"]))
    report["rows"] = rows
    report["analysis"] = analysis_lines(figures, report["machine"]["blas_threads"])
    report["notes"] = [line[2:].replace("**", "") for line in report["analysis"]] + ["Details: docs/BENCH.md."]

    os.makedirs(os.path.dirname(json_path), exist_ok=True)
    with open(json_path + ".tmp", "w") as f:
        json.dump(report, f, indent=2)
    os.replace(json_path + ".tmp", json_path)
    write_markdown(md_path, report)
    log(f"wrote {os.path.relpath(json_path, ROOT)} and {os.path.relpath(md_path, ROOT)} (measured in {report['seconds']:.0f} s)")
    for row in rows:
        log(f"  {row['what']}: {row['ours']} {row['unit']}" + (f" (target {row['paper']})" if row["paper"] is not None else ""))




if __name__ == "__main__":
    main()
