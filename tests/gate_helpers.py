"""Helpers for the gate/report tests: synthetic results with known effects, and one real recording.

Synthetic runs go straight into a `ResultStore` (no subprocess), so statistics and baselines can be
tested with exactly known shifts; `recorded_lab` measures the real tiny model with the real runner
once per test session and is shared by the modules that need real samples.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np

from harness.store.results import ResultRecord, ResultStore

_RECORDED: dict = {}


def latency_samples(
    n: int = 2000,
    level: float = 1000.0,
    rng: np.random.Generator | None = None,
    phi: float = 0.9,
    noise: float = 0.01,
    drift: float = 0.0,
) -> np.ndarray:
    """Autocorrelated (AR(1)) latency samples around ``level * (1 + drift)`` with a right tail."""
    from scipy.signal import lfilter

    rng = rng or np.random.default_rng()
    e = rng.normal(0, noise * np.sqrt(1 - phi * phi), n)
    ar = lfilter([1.0], [1.0, -phi], e)
    tail = rng.exponential(0.01, n) * (rng.random(n) < 0.1)
    return level * (1 + drift) * (1 + ar + tail)


def _set_started_at(db: Path, run_id: str, started_at: float) -> None:
    """Back-date a run (the store has no API for rewriting history, on purpose)."""
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE runs SET started_at=? WHERE run_id=?", (started_at, run_id))


def add_run(
    store: ResultStore,
    results: list[dict],
    label: str = "test",
    started_at: float | None = None,
    extra_plan: tuple[str, ...] = (),
) -> str:
    """One run with the given results: dicts of model, variant, device, profile, status, samples, metrics."""
    keys = [
        f"{r.get('model', 'm')}-{r.get('variant', 'fp32')}-{r.get('device', 'local')}#{r.get('repeat', 0)}"
        for r in results
    ]
    run_id = store.start_run(keys + list(extra_plan), "plan", ["test"], "0", "host", None, label)
    if started_at is not None:
        _set_started_at(store.path, run_id, started_at)
    for key, r in zip(keys, results):
        status = r.get("status", "ok")
        samples = r.get("samples")
        measurements = []
        if status == "ok":
            metrics = {"model_size_bytes": 10000.0, "peak_rss_kb": 50000.0, "accuracy_top1": 0.9}
            if samples is not None and len(samples):
                s = np.asarray(samples)
                metrics.update(
                    latency_p50_us=float(np.median(s)),
                    latency_p90_us=float(np.quantile(s, 0.9)),
                    latency_count=float(s.size),
                    latency_mean_us=float(s.mean()),
                )
            metrics.update(r.get("metrics", {}))
            measurements = [(m, v, "") for m, v in metrics.items() if v is not None]
        rec = ResultRecord(
            run_id=run_id,
            job_key=key,
            model=r.get("model", "m"),
            model_sha256="0" * 64,
            variant=r.get("variant", "fp32"),
            device_id=r.get("device", "local"),
            profile=r.get("profile", "localhost"),
            status=status,
            error=r.get("error"),
            artifact_sha256=r.get("artifact"),
            transport=r.get("transport", "local"),
        )
        store.record(rec, measurements, {"steady": list(samples)} if status == "ok" and samples is not None else {})
    store.finish_run(run_id, "complete")
    return run_id


def build_small_convnet(directory: Path) -> Path:
    """A small conv net (~tens of us per inference) with calibration and eval sidecars.

    Not the session's `tiny_model`: at ~1.5 us per inference, timer granularity (10 ns steps) and
    per-process placement effects move its level by up to 6 % between runs, which is beyond the
    5 % threshold of the localhost profile; real models are slower and far steadier.
    """
    import keras

    keras.utils.set_random_seed(5)
    model = keras.Sequential(
        [
            keras.Input((24, 24, 3)),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(4, activation="softmax"),
        ]
    )
    path = directory / "convnet.keras"
    model.save(path)
    rng = np.random.default_rng(5)
    x = rng.random((80, 24, 24, 3), dtype=np.float32)
    np.savez(directory / "convnet.calibration.npz", x=x[:40])
    np.savez(directory / "convnet.eval.npz", x=x[40:], y=rng.integers(0, 4, 40))
    return path


def replay_run(store: ResultStore, run_id: str, device: str) -> str:
    """A second run made from the recorded results of `device` in `run_id`: the same measurements and
    raw samples under a new run id.

    This is an A/A pair on recorded samples whose outcome does not depend on how busy the host was
    while the tests ran; two real runs would (a neighbour can slow a whole run by ~35 %).
    """
    rows = store._query(
        "SELECT result_id, job_key, model, model_sha256, variant, profile FROM results "
        "WHERE run_id=? AND device_id=? AND status='ok' ORDER BY result_id",
        (run_id, device),
    )
    new_id = store.start_run([r[1] for r in rows], "replay", ["replay", run_id], "0", "host", None, "replay")
    for rid, key, model, sha, variant, profile in rows:
        values = store._query("SELECT metric, value, unit FROM measurements WHERE result_id=?", (rid,))
        rec = ResultRecord(
            run_id=new_id,
            job_key=key,
            model=model,
            model_sha256=sha,
            variant=variant,
            device_id=device,
            profile=profile,
            status="ok",
        )
        store.record(rec, [(m, v, u) for m, v, u in values], {"steady": store.samples(rid)})
    store.finish_run(new_id, "complete")
    return new_id


def recorded_lab(tmp_path_factory, hil) -> dict:
    """One real `hil run` of a small conv net (fp32 + int8) on two local devices with different
    profiles (`localhost`, and `localhost-2t` with two threads), then an A/A replay of the `local`
    results (`replay_run`) as the second run.

    Measured once per session; tests copy the database before changing it.
    """
    if _RECORDED:
        return _RECORDED
    repo = Path(__file__).resolve().parents[1]
    lab = tmp_path_factory.mktemp("lab")
    (lab / "device_profiles").mkdir()
    for p in (repo / "device_profiles").glob("*.yaml"):
        shutil.copy(p, lab / "device_profiles" / p.name)
    two = (repo / "device_profiles" / "localhost.yaml").read_text().replace("num_threads: 1", "num_threads: 2")
    (lab / "device_profiles" / "localhost-2t.yaml").write_text(two)
    (lab / "inventory.yaml").write_text(
        "devices:\n"
        "  - {id: local, profile: localhost, transport: {type: local}}\n"
        "  - {id: local2, profile: localhost-2t, transport: {type: local}}\n"
    )
    model = build_small_convnet(lab)
    env = {"HILBENCH_CACHE": str(lab / "cache")}
    args = [
        "run",
        str(model),
        "--variants",
        "fp32,int8",
        "--min-runs",
        "200",
        "--min-seconds",
        "0.25",
        "--warmup-runs",
        "20",
        "--warmup-seconds",
        "0.1",
    ]
    p = hil(*args, "--devices", "local,local2", cwd=lab, env=env, check=True)
    first = p.stdout.strip().splitlines()[-1]
    db = lab / "reports" / "results.sqlite"
    store = ResultStore(db)
    try:
        second = replay_run(store, first, "local")
    finally:
        store.close()
    _RECORDED.update(dir=lab, db=db, runs=[first, second], env=env, model="convnet")
    return _RECORDED
