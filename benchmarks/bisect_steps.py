"""`hil bisect` over a 32-commit history with one regressing commit: steps and wall time.

Builds a git repository of a tiny Keras model (every commit new weights, one commit adds a 3 x 256
Dense block: ~1000x the parameters and a large slowdown), then runs `hil bisect` as a user would (a
fresh `hil` process, an empty artifact cache) for --metric size (no device) and --metric latency
(this host, the default runner settings and 8 paired processes per step), and prints per run: the
commit named, whether it is the regressing one, the steps measured against the bound
ceil(log2 N) + 1, and the wall time.

Usage: python benchmarks/bisect_steps.py [--commits 32] [--at 21 ...] [--metric size latency]
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.org",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.org",
}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env={**os.environ, **GIT_ENV}
    ).stdout.strip()


def make_history(root: Path, commits: int, at: int) -> tuple[Path, list[str]]:
    """`commits` commits of net.keras; the wide block comes in with commit `at` (0 is the good one)."""
    import keras

    repo = root / f"repo-{at}"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    shas = []
    for i in range(commits):
        keras.utils.set_random_seed(i)
        layers = [keras.Input((8,), name="x"), keras.layers.Dense(8, activation="relu", name="d0")]
        if i >= at:
            layers += [keras.layers.Dense(256, activation="relu", name=f"wide{j}") for j in range(3)]
        layers.append(keras.layers.Dense(4, name="out"))
        keras.Sequential(layers, name="net").save(repo / "net.keras")
        git(repo, "add", "net.keras")
        git(repo, "commit", "-q", "-m", f"weights {i}" + (" + wide block" if i == at else ""))
        shas.append(git(repo, "rev-parse", "HEAD"))
    (repo / ".gitignore").write_text("reports/\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-q", "-m", "ignore reports")
    return repo, shas


def bisect(repo: Path, good: str, metric: str, cache: Path) -> tuple[int, str, float]:
    env = {**os.environ, "HILBENCH_CACHE": str(cache), "TF_CPP_MIN_LOG_LEVEL": "3"}
    args = [sys.executable, "-m", "harness", "bisect", "net.keras", "--good", good, "--metric", metric]
    if metric != "size":
        args += ["--device", "local"]
    t0 = time.perf_counter()
    p = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"hil bisect exited {p.returncode}: {p.stderr.strip().splitlines()[-1]}")
    return p.returncode, p.stdout, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commits", type=int, default=32)
    ap.add_argument("--at", type=int, nargs="+", default=[21], help="which commit regresses (1 .. commits-1)")
    ap.add_argument("--metric", nargs="+", default=["size", "latency"], choices=["size", "latency"])
    a = ap.parse_args()
    n = a.commits - 1  # candidates after the good commit
    bound = math.ceil(math.log2(n)) + 1
    print(f"{a.commits} commits, {n} candidates after --good: at most {bound} steps")
    print(f"{'metric':8} {'at':>3} {'named':>6} {'steps':>5} {'wall s':>7}  effect")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for at in a.at:
            repo, shas = make_history(root, a.commits, at)
            for metric in a.metric:
                _, out, wall = bisect(repo, shas[0], metric, root / f"cache-{at}-{metric}")
                lines = out.splitlines()
                named = lines[0].split()[3]
                steps = int(lines[2].split()[1])
                ok = "yes" if named == shas[at] else "NO"
                print(f"{metric:8} {at:3d} {ok:>6} {steps:5d} {wall:7.1f}  {lines[1].split(': ', 1)[1]}")


if __name__ == "__main__":
    main()
