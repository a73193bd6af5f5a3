"""journeys.toml: defaults, unknown keys with suggestions, types, choices."""

from __future__ import annotations

import pytest

from pipeline.config import ConfigError, Key, defaults, load
from pipeline.db import Database, DatabaseError


def _load(tmp_path, text):
    path = tmp_path / "journeys.toml"
    path.write_text(text)
    return load(path)


def test_defaults_and_overrides(tmp_path):
    cfg = _load(tmp_path, "[sessions]\ntimeout_minutes = 45\nsession_source = 'source'\n")
    assert cfg["sessions"] == {"timeout_minutes": 45, "session_source": "source"}
    assert cfg["ingest"] == defaults()["ingest"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[sesions]\ntimeout_minutes = 5\n", "unknown section [sesions]; did you mean 'sessions'?"),
        ("[sessions]\ntimeout_minuts = 5\n", "unknown key sessions.timeout_minuts; did you mean 'timeout_minutes'?"),
        ("[sessions]\ntimeout_minutes = 'long'\n", "sessions.timeout_minutes must be a whole number"),
        ("[sessions]\ntimeout_minutes = 0\n", "sessions.timeout_minutes must be >= 1"),
        ("[sessions]\nsession_source = 'sources'\n", "did you mean 'source'?"),
        ("[sessions\n", "not valid TOML"),
        ("sessions = 3\n", "[sessions] must be a table"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, text)
    assert message in str(err.value) and "journeys.toml" in str(err.value)


def test_a_key_with_a_pattern_must_say_its_form():
    with pytest.raises(ValueError, match="must say its form"):
        Key(str, "", pattern=r"\d+")
    assert Key(str, "", pattern=r"\d+", form="digits").form == "digits"


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "nope.toml")


def test_engine_memory_limit_is_checked_and_applied_by_build(tmp_path, db):
    from pipeline.build import build
    from tests.conftest import load_events, make_journeys

    with pytest.raises(ConfigError, match="engine.memory_limit = '8 gigs' must be a size such as '8GB'"):
        _load(tmp_path, "[engine]\nmemory_limit = '8 gigs'\n")
    with pytest.raises(DatabaseError, match="memory limit '8 gigs' must look like 8GB"):
        Database(tmp_path / "capped.duckdb", memory_limit="8 gigs")  # the API, without the config's check
    cfg = _load(tmp_path, "[engine]\nmemory_limit = '300MB'\n")
    load_events(db, make_journeys({"u1": [("page_view", 0)]}))
    build(db, cfg)
    assert db.scalar("select current_setting('memory_limit')") == "286.1 MiB"  # 300 MB in MiB


def test_engine_memory_limit_holds_while_ingest_the_report_and_a_run_work(tmp_path, monkeypatch):
    """The cap is DuckDB's setting while each command does its work: the real ingest and report
    functions, wrapped to read the setting first, run under the real CLI."""
    import polars as pl
    from typer.testing import CliRunner

    import pipeline.ingest
    import pipeline.report
    import pipeline.run
    from pipeline.cli import app
    from tests.conftest import make_journeys, write_csv

    seen: list[tuple[str, str]] = []

    def spy(module, name):
        real = getattr(module, name)

        def wrapper(db, *args, **kwargs):
            seen.append((name, db.scalar("select current_setting('memory_limit')")))
            return real(db, *args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    for module, name in ((pipeline.ingest, "ingest_files"), (pipeline.run, "ingest_files"),
                         (pipeline.report, "write_report")):
        spy(module, name)
    landing = tmp_path / "landing"
    landing.mkdir()
    events = make_journeys({"u1": [("view_item", 0), ("purchase", 1)]})
    write_csv(landing / "day1.csv", events)
    toml = tmp_path / "journeys.toml"
    toml.write_text("[engine]\nmemory_limit = '300MB'\n")
    dbfile, out = str(tmp_path / "j.duckdb"), str(tmp_path / "rep")
    runner = CliRunner()
    for args in (["ingest", str(landing / "day1.csv")], ["build"], ["report", "--out", out],
                 ["run", "--landing", str(landing), "--out", out]):
        if args[0] == "run":  # a new file, so that the run builds and writes its report
            write_csv(landing / "day2.csv", events.with_columns(
                pl.lit("u2").alias("user_id"), pl.format("e2-{}", pl.col("event_id")).alias("event_id")))
        result = runner.invoke(app, [*args, "--db", dbfile, "--config", str(toml)])
        assert result.exit_code == 0, (args, result.output)
    assert seen == [("ingest_files", "286.1 MiB"), ("write_report", "286.1 MiB")] * 2  # 300 MB in MiB
