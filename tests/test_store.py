"""Result store semantics that reports and gates rely on."""

from pathlib import Path

import pytest
import sqlalchemy as sa
from postgres import contents, direct

from harness.errors import ConfigError
from harness.store.results import ResultRecord, ResultStore


def rec(run_id, status, **kw):
    return ResultRecord(
        run_id=run_id,
        job_key="job1",
        model="m",
        model_sha256="0" * 64,
        variant="fp32",
        device_id="d",
        profile="localhost",
        status=status,
        **kw,
    )


def test_resumed_job_shows_its_newest_success_only(store_db):
    store = ResultStore(store_db)
    run = store.start_run(["job1"], "h", [], "0", "host", None)
    store.record(rec(run, "infra_error", error="dropped"), [], {})
    store.record(rec(run, "ok"), [("latency_p50_us", 10.0, "us")], {"steady": [9.0, 10.0, 11.0]})
    store.record(rec(run, "infra_error", error="late failure"), [], {})  # never hides the success
    wide = store.wide(run)
    assert wide["status"].tolist() == ["ok"] and wide["latency_p50_us"].tolist() == [10.0]
    assert len(store.wide(run, superseded=True)) == 3
    assert store.samples(int(wide["result_id"].iloc[0])) == [9.0, 10.0, 11.0]
    assert store.run_row()["run_id"] == run
    store.close()


def test_read_only_open_of_a_missing_database_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no results database here"):
        ResultStore(tmp_path / "nope" / "r.sqlite", create=False)
    assert not (tmp_path / "nope").exists()
    (tmp_path / "junk.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match="junk.sqlite: not a usable hilbench results database"):
        ResultStore(tmp_path / "junk.sqlite")


def test_foreign_newer_and_older_databases(store_db, tmp_path):
    """A database that is not ours is refused untouched; a newer schema is refused; v1 is migrated."""
    import sqlite3

    from harness.errors import ConfigError
    from harness.store import schema

    engine = direct(store_db)
    with engine.begin() as db:
        db.execute(sa.text("CREATE TABLE customers (id INTEGER)"))
    before = contents(store_db)
    with pytest.raises(ConfigError, match="not a hilbench results database"):
        ResultStore(store_db)
    assert contents(store_db) == before
    if isinstance(store_db, Path):
        with sqlite3.connect(store_db) as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] != "wal"
        db.close()
    with engine.begin() as db:
        db.execute(sa.text("DROP TABLE customers"))

    ResultStore(store_db).close()
    with engine.begin() as db:
        db.execute(
            sa.text("UPDATE meta SET value=:v WHERE key='schema_version'"), {"v": str(schema.SCHEMA_VERSION + 1)}
        )
    engine.dispose()
    with pytest.raises(ConfigError, match=f"newer hilbench \\(schema {schema.SCHEMA_VERSION + 1}"):
        ResultStore(store_db)

    # a v1 database (results only, verdict tables made on first use by the gate) gains them on open
    old = tmp_path / "v1.sqlite"
    with sqlite3.connect(old) as db:
        db.executescript(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "INSERT INTO meta VALUES ('schema_version', '1');"
            "CREATE TABLE runs (run_id TEXT PRIMARY KEY, started_at REAL NOT NULL, finished_at REAL,"
            " status TEXT NOT NULL, plan_hash TEXT NOT NULL, plan TEXT NOT NULL, argv TEXT,"
            " harness_version TEXT, host TEXT, git_commit TEXT, label TEXT);"
            "INSERT INTO runs VALUES ('r1', 1.0, 2.0, 'complete', 'h', '[]', '[]', '0', 'x', NULL, NULL);"
            "CREATE TABLE results (result_id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL,"
            " job_key TEXT NOT NULL, timestamp REAL NOT NULL, model TEXT NOT NULL,"
            " model_sha256 TEXT NOT NULL, variant TEXT NOT NULL, converter_version TEXT,"
            " artifact_sha256 TEXT, device_id TEXT NOT NULL, profile TEXT NOT NULL, transport TEXT,"
            " runtime TEXT, runtime_version TEXT, harness_version TEXT, git_commit TEXT, host TEXT,"
            " status TEXT NOT NULL, error TEXT, raw TEXT);"
        )
    store = ResultStore(old)
    assert store.runs().run_id.tolist() == ["r1"]
    store.close()
    with sqlite3.connect(old) as db:
        version = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
        assert version == str(schema.SCHEMA_VERSION)
        assert db.execute("SELECT COUNT(*) FROM gate_verdicts").fetchone()[0] == 0
