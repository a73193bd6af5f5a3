"""journeys.toml: defaults, unknown keys with suggestions, types, choices."""

from __future__ import annotations

import pytest

from pipeline.config import ConfigError, defaults, load


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


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "nope.toml")


def test_engine_memory_limit_is_checked_and_applied_by_build(tmp_path, db):
    from pipeline.build import build
    from tests.conftest import load_events, make_journeys

    with pytest.raises(ConfigError, match="engine.memory_limit = '8 gigs'"):
        _load(tmp_path, "[engine]\nmemory_limit = '8 gigs'\n")
    cfg = _load(tmp_path, "[engine]\nmemory_limit = '300MB'\n")
    load_events(db, make_journeys({"u1": [("page_view", 0)]}))
    build(db, cfg)
    assert db.scalar("select current_setting('memory_limit')") == "286.1 MiB"  # 300 MB in MiB
