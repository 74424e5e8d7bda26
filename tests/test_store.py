"""Result store semantics that reports and gates rely on."""

import pytest

from harness.errors import ConfigError
from harness.store import ResultRecord, ResultStore


def rec(run_id, status, **kw):
    return ResultRecord(run_id=run_id, job_key="job1", model="m", model_sha256="0" * 64, variant="fp32",
                        device_id="d", profile="localhost", status=status, **kw)


def test_resumed_job_shows_its_newest_success_only(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    run = store.start_run(["job1"], "h", [], "0", "host", None)
    store.record(rec(run, "infra_error", error="dropped"), [], {})
    store.record(rec(run, "ok"), [("latency_p50_us", 10.0, "us")], {"steady": [9.0, 10.0, 11.0]})
    store.record(rec(run, "infra_error", error="late failure"), [], {})  # never hides the success
    wide = store.wide(run)
    assert wide["status"].tolist() == ["ok"] and wide["latency_p50_us"].tolist() == [10.0]
    assert len(store.wide(run, superseded=True)) == 3
    assert store.samples(int(wide["result_id"].iloc[0])) == [9.0, 10.0, 11.0]
    assert store.run_row()["run_id"] == run


def test_read_only_open_of_a_missing_database_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no results database here"):
        ResultStore(tmp_path / "nope" / "r.sqlite", create=False)
    assert not (tmp_path / "nope").exists()
    (tmp_path / "junk.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match="junk.sqlite: not a usable hilbench results database"):
        ResultStore(tmp_path / "junk.sqlite")
