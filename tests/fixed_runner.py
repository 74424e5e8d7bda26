"""A test double of the device runner for a device with a deterministic clock.

It is installed as the `python` of a local device, so the host runs it exactly as it runs the real
runner (`<python> linux_runner.py --model M ...`) and parses its one JSON document. Latencies come
from a script file (env `HILBENCH_FIXED_LATENCY`): ``{"levels": {sha256-prefix: microseconds},
"factor": 1.0}``; ``factor`` slows everything down (a disturbed night). A small, deterministic
ripple (from a call counter next to the script) keeps paired statistics finite. Statistics are the
real runner's `summarize`, loaded from the runner file the host passed.
"""

import hashlib
import importlib.util
import json
import os
import sys


def main(argv: list[str]) -> int:
    runner_path, args = argv[0], argv[1:]
    if "--probe" in args:
        print(json.dumps({"schema": "hilbench.probe/1", "python": {"version": "3.11", "ok": True}}))
        return 0
    model = args[args.index("--model") + 1]
    blob = open(model, "rb").read()
    sha = hashlib.sha256(blob).hexdigest()
    script_path = os.environ["HILBENCH_FIXED_LATENCY"]
    with open(script_path) as f:
        script = json.load(f)

    def level_of(sha):
        return next(v for k, v in script["levels"].items() if sha.startswith(k)) * script.get("factor", 1.0)

    level = level_of(sha)
    counter = script_path + ".count"
    calls = int(open(counter).read()) if os.path.exists(counter) else 0
    with open(counter, "w") as f:
        f.write(str(calls + 1))
    ripple = 1.0 + 0.002 * ((calls * 7) % 5 - 2) / 2
    samples = [level * ripple * (1.0 + 0.0005 * ((i * 3) % 7 - 3)) for i in range(200)]
    spec = importlib.util.spec_from_file_location("runner", runner_path)
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    lat = runner.summarize(samples)
    doc = {
        "schema": "hilbench.runner/1",
        "status": "ok",
        "runtime": {"name": "fixed-clock-double", "version": "1"},
        "python": "3",
        "model": {"path": model, "size_bytes": len(blob), "sha256": sha},
        "init_us": 100.0,
        "first_inference_us": level,
        "latency_us": lat,
        "memory": {"model_memory_kb": 1000, "peak_rss_kb": 50000},
        "telemetry": {"disturbed": False, "throttled": None},
        "energy": None,
        "accuracy": None,
    }
    if "--paired-model" in args:  # the gate's in-process confirmation: both models, same "process"
        paired = args[args.index("--paired-model") + 1]
        pblob = open(paired, "rb").read()
        psha = hashlib.sha256(pblob).hexdigest()
        plevel = level_of(psha)
        pripple = 1.0 + 0.001 * ((calls * 3) % 5 - 2) / 2  # a ripple of its own: ratios keep a spread
        doc["paired"] = {
            "path": paired,
            "size_bytes": len(pblob),
            "sha256": psha,
            "order": "ABBA",
            "block": 1,
            "latency_us": runner.summarize([plevel * pripple * (1.0 + 0.0005 * ((i * 5) % 7 - 3)) for i in range(200)]),
        }
    # the per-operator profile pass: op times from the script for the artifact's sha256 when it has
    # them (the gate's explanation tests); else, with HILBENCH_FIXED_PROFILE, split from the fixed
    # level by MACs (the store's tests); else none (a device without a profiler)
    runs = int(args[args.index("--profile-runs") + 1]) if "--profile-runs" in args else None
    mode = os.environ.get("HILBENCH_FIXED_PROFILE")
    for key, path, digest in (
        ("op_profile", model, sha),
        ("paired_op_profile", doc.get("paired", {}).get("path"), doc.get("paired", {}).get("sha256")),
    ):
        prof = script_profile(path, digest, script.get("op_times") or {}, runs) if path and runs else None
        if prof is None and path and mode:
            prof = mac_split_profile(path, level, mode)
        if prof is not None:
            doc[key] = prof
    print(json.dumps(doc))
    return 0


def mac_split_profile(model: str, level: float, mode: str) -> dict:
    """The per-operator profile of the model's own ops, split from the fixed level by MACs (+8 per op):
    env HILBENCH_FIXED_PROFILE (or runner --profile-runs) = N invocations, `malformed` (an op short of
    a time) or `foreign` (an op of another type than the model's: a profile of another artifact)."""
    from harness.models.inspect.analysis import analyze

    ops = analyze(model).operators
    n = 3 if mode in ("malformed", "foreign") else int(mode)
    weights = [op.macs + 8 for op in ops]
    out = []
    for op, w in zip(ops, weights):
        times = [level * w / sum(weights) * (1.0 + 0.01 * ((j % 3) - 1)) for j in range(n)]
        out.append({"index": op.index, "subgraph": op.subgraph, "type": op.name, "delegated": False, "times": times})
    if mode == "malformed":
        out[0]["times"] = out[0]["times"][:-1]
    if mode == "foreign":
        out[0]["type"] = "CONV_2D"
    return {"source": "litert-builtin", "unit": "us", "invocations": n, "ops": out}


def script_profile(path, sha, op_times, runs):
    """The profile document (harness/profile/document.py) of the model at `path`: its ops with the
    times the script gives for its sha256 prefix (the same time in each invocation); none when the
    script has none (a device without a profiler); "malformed" and "garbled": broken documents."""
    times = next((v for k, v in op_times.items() if sha.startswith(k)), None)
    if times is None:
        return None
    from harness.models.inspect.analysis import analyze

    ops = analyze(path).operators
    runs_given, subgraph = runs, None
    if times == "malformed":  # one time per op where `runs` are due
        times, runs_given = [1.0] * len(ops), 1
    elif times == "garbled":  # a subgraph that is no number
        times, subgraph = [1.0] * len(ops), "main"
    return {
        "source": "litert-builtin",
        "unit": "us",
        "invocations": runs,
        "ops": [
            {"index": o.index, "subgraph": subgraph or o.subgraph, "type": o.name, "times": [t] * runs_given}
            for o, t in zip(ops, times)
        ],
    }


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
