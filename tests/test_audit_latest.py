"""tools/audit_latest.py: the decision logic on real saved PyPI project JSON (tests/fixtures/audit/), no network."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "audit"

_spec = importlib.util.spec_from_file_location("audit_latest", ROOT / "tools" / "audit_latest.py")
al = importlib.util.module_from_spec(_spec)
sys.modules["audit_latest"] = al  # dataclasses resolve annotations through sys.modules
_spec.loader.exec_module(al)


def payload(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def fake_fetch(name: str) -> dict | None:
    """Fixtures by canonical name; None (404) for a project that is not saved."""
    path = FIXTURES / f"{al.canonical_name(name)}.json"
    return json.loads(path.read_text()) if path.exists() else None


def test_fixtures_are_the_expected_real_payloads():
    assert payload("requests")["info"]["version"] == "2.34.2"
    assert payload("duckdb")["info"]["version"] == "2.0.0"
    assert payload("ecdsa")["info"]["version"] == "0.19.2"
    assert payload("requests")["vulnerabilities"] == []
    assert [v["id"] for v in payload("ecdsa")["vulnerabilities"]] == ["PYSEC-2026-1325", "GHSA-wj6h-64fc-37mp"]


def test_latest_release_without_advisory_is_clean():
    r = al.classify("requests", "2.34.2", payload("requests"))
    assert (r.status, r.latest, r.advisories) == (al.CLEAN, "2.34.2", ())


def test_latest_release_with_advisory_is_vulnerable_with_ids_aliases_fixed_in():
    r = al.classify("ecdsa", "0.19.2", payload("ecdsa"))
    assert r.status == al.VULNERABLE
    assert r.advisories == (
        al.Advisory("PYSEC-2026-1325", ("CVE-2024-23342", "GHSA-wj6h-64fc-37mp"), ()),
        al.Advisory("GHSA-wj6h-64fc-37mp", ("CVE-2024-23342", "PYSEC-2026-1325"), ()),
    )


def test_older_pin_is_unverified_even_when_latest_has_advisories():
    # The project JSON's advisories are for the latest release; they say nothing about an older pin.
    for name, pinned in [("requests", "2.32.3"), ("ecdsa", "0.18.0"), ("duckdb", "1.4.1")]:
        r = al.classify(name, pinned, payload(name))
        assert r.status == al.UNVERIFIED, name
        assert r.reason == f"pinned {pinned}, latest {payload(name)['info']['version']}"
        assert r.advisories == ()


def test_withdrawn_advisories_are_skipped():
    p = payload("ecdsa")
    for v in p["vulnerabilities"]:
        v["withdrawn"] = "2026-01-01T00:00:00Z"
    assert al.classify("ecdsa", "0.19.2", p).status == al.CLEAN
    p["vulnerabilities"][0]["withdrawn"] = None
    r = al.classify("ecdsa", "0.19.2", p)
    assert r.status == al.VULNERABLE
    assert [a.id for a in r.advisories] == ["PYSEC-2026-1325"]


def test_missing_project_or_malformed_payload_is_unverified_never_clean():
    assert al.classify("private-pkg", "1.0", None).status == al.UNVERIFIED
    p = payload("requests")
    del p["vulnerabilities"]
    assert al.classify("requests", "2.34.2", p).status == al.UNVERIFIED
    assert al.classify("requests", "2.34.2", {"vulnerabilities": []}).status == al.UNVERIFIED


@pytest.mark.parametrize(
    ("pinned", "latest", "same"),
    [("2.0", "2.0.0", True), ("2.0.0", "2.0.0", True), ("2.0.1", "2.0.0", False), ("2.0.0rc1", "2.0.0", False)],
)
def test_version_equality(pinned, latest, same):
    status = al.classify("duckdb", pinned, {"info": {"version": latest}, "vulnerabilities": []}).status
    assert status == (al.CLEAN if same else al.UNVERIFIED)


def test_parse_requirements_pins_and_other_lines():
    text = "# comment\nDuckDB==2.0.0\nrequests[socks]==2.34.2 ; python_version>'3'\n\nfoo @ file:///tmp/foo.whl\n"
    pins, other = al.parse_requirements(text)
    assert pins == [("DuckDB", "2.0.0"), ("requests", "2.34.2")]
    assert other == ["foo @ file:///tmp/foo.whl"]


def test_audit_exit_codes_and_summary():
    clean = al.audit([("requests", "2.34.2"), ("duckdb", "2.0.0")], [], fake_fetch)
    assert [r.status for r in clean] == [al.CLEAN, al.CLEAN]
    assert al.exit_code(clean) == al.EXIT_CLEAN == 0

    pins = [("requests", "2.34.2"), ("duckdb", "1.4.1"), ("not-saved", "1.0")]
    unverified = al.audit(pins, ["x @ file:///x"], fake_fetch)
    assert [r.status for r in unverified] == [al.CLEAN, al.UNVERIFIED, al.UNVERIFIED, al.UNVERIFIED]
    assert al.exit_code(unverified) == al.EXIT_UNVERIFIED == 2

    mixed = al.audit([("ecdsa", "0.19.2"), ("duckdb", "1.4.1"), ("requests", "2.34.2")], [], fake_fetch)
    assert al.exit_code(mixed) == al.EXIT_VULNERABLE == 1
    text = al.render(mixed)
    assert "VULNERABLE ecdsa==0.19.2" in text
    assert "PYSEC-2026-1325  aliases: CVE-2024-23342, GHSA-wj6h-64fc-37mp  fixed_in: no fix released" in text
    assert "UNVERIFIED duckdb==1.4.1: pinned 1.4.1, latest 2.0.0" in text
    summary = [line.split()[:2] for line in text.splitlines()[-4:]]
    assert summary == [["packages", "3"], ["clean", "1"], ["advisories", "1"], ["unverified", "1"]]


def test_main_network_failure_is_one_line_error_exit_3(tmp_path, monkeypatch, capsys):
    req = tmp_path / "requirements.txt"
    req.write_text("requests==2.34.2\n")

    def unreachable(name, timeout):
        raise al.FetchError(f"https://pypi.org/pypi/{name}/json: [Errno -2] Name or service not known")

    monkeypatch.setattr(al, "fetch_project", unreachable)
    assert al.main([str(req)]) == al.EXIT_ERROR == 3
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith(
        "audit_latest: error: cannot fetch https://pypi.org/pypi/requests/json"
    )
    assert "Traceback" not in err


def test_main_missing_file_exit_3(tmp_path, capsys):
    assert al.main([str(tmp_path / "missing.txt")]) == 3
    assert capsys.readouterr().err.startswith("audit_latest: error: cannot read ")


def test_main_uses_fetch_and_returns_exit_code(tmp_path, monkeypatch, capsys):
    req = tmp_path / "requirements.txt"
    req.write_text("requests==2.34.2\necdsa==0.19.2\n")
    monkeypatch.setattr(al, "fetch_project", lambda name, timeout: fake_fetch(name))
    assert al.main([str(req)]) == 1
    assert "advisories      1" in capsys.readouterr().out


def test_fetch_project_maps_404_to_none_and_network_errors_to_fetcherror(monkeypatch):
    import urllib.error

    def raise_(exc):
        def urlopen(req, timeout):
            raise exc

        return urlopen

    url = "https://pypi.org/pypi/annotated-doc/json"
    monkeypatch.setattr(al.urllib.request, "urlopen", raise_(urllib.error.HTTPError(url, 404, "Not Found", {}, None)))
    assert al.fetch_project("Annotated_Doc") is None
    monkeypatch.setattr(al.urllib.request, "urlopen", raise_(urllib.error.HTTPError(url, 503, "Unavailable", {}, None)))
    with pytest.raises(al.FetchError, match=r"annotated-doc/json: HTTP 503"):
        al.fetch_project("annotated-doc")
    monkeypatch.setattr(al.urllib.request, "urlopen", raise_(urllib.error.URLError("Name or service not known")))
    with pytest.raises(al.FetchError, match=r"annotated-doc/json: Name or service not known"):
        al.fetch_project("annotated-doc")
    monkeypatch.setattr(al.urllib.request, "urlopen", raise_(TimeoutError("timed out")))
    with pytest.raises(al.FetchError, match=r"timed out"):
        al.fetch_project("annotated-doc")
