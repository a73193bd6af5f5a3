"""Fallback for `make audit`: PyPI advisory data for pinned dependencies that are at their latest release.

Why it exists: pip-audit's PyPI service reads the per-version endpoint
``https://pypi.org/pypi/<name>/<version>/json``, which answers 404 in this sandbox for every package
and version (so pip-audit --strict stops with "could not be audited"), and its other services (OSV,
ecosyste.ms) do not resolve here. The project endpoint ``https://pypi.org/pypi/<name>/json`` does
answer; its ``vulnerabilities`` list is PyPI's advisory data for the project's LATEST release
(``info.version``) only. So this script can prove "no known vulnerability" only for a pin that equals
the latest release; any other pin is reported as unverified, never as clean.

Reads: a ``pip freeze`` file (``name==version`` lines; argument 1) and, per package, the project JSON
from PyPI (urllib, standard library only, so it runs in any venv). Writes: a report on stdout, a
one-line error on stderr on network failure. Writes no files.

Exit codes: 0 every pin checked and clean; 1 at least one advisory applies to a pin; 2 no advisory
found but at least one pin is unverified; 3 network or input error.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

PYPI_JSON = "https://pypi.org/pypi/{name}/json"

CLEAN = "clean"
VULNERABLE = "vulnerable"
UNVERIFIED = "unverified"

EXIT_CLEAN = 0
EXIT_VULNERABLE = 1
EXIT_UNVERIFIED = 2
EXIT_ERROR = 3

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;#]+)")


class FetchError(Exception):
    """The project JSON could not be fetched (network, HTTP error other than 404, bad JSON)."""


@dataclass(frozen=True)
class Advisory:
    id: str
    aliases: tuple[str, ...]
    fixed_in: tuple[str, ...]


@dataclass(frozen=True)
class Result:
    name: str
    pinned: str | None
    status: str
    latest: str | None = None
    reason: str = ""
    advisories: tuple[Advisory, ...] = field(default_factory=tuple)


def canonical_name(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _version_key(version: str) -> tuple[int, ...] | str:
    """Equal keys for equal versions: numeric releases compare without trailing zeros (1.0 == 1.0.0);
    anything else compares as its lower-cased string (a mismatch only makes a pin unverified)."""
    v = version.strip().lower().removeprefix("v")
    if re.fullmatch(r"\d+(\.\d+)*", v):
        parts = [int(p) for p in v.split(".")]
        while len(parts) > 1 and parts[-1] == 0:
            parts.pop()
        return tuple(parts)
    return v


def parse_requirements(text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """``name==version`` pins, and the other non-comment lines (which cannot be checked)."""
    pins: list[tuple[str, str]] = []
    other: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _PIN.match(line)
        if m:
            pins.append((m.group(1), m.group(3)))
        else:
            other.append(line)
    return pins, other


def classify(name: str, pinned: str, payload: dict | None) -> Result:
    """Decide one pin from its project JSON (``None``: the project is not on PyPI)."""
    if payload is None:
        return Result(name, pinned, UNVERIFIED, reason="project not found on PyPI")
    latest = (payload.get("info") or {}).get("version")
    vulns = payload.get("vulnerabilities")
    if not isinstance(latest, str) or not isinstance(vulns, list):
        return Result(name, pinned, UNVERIFIED, latest, "project JSON lacks info.version or vulnerabilities")
    if _version_key(pinned) != _version_key(latest):
        return Result(name, pinned, UNVERIFIED, latest, f"pinned {pinned}, latest {latest}")
    advisories = tuple(
        Advisory(str(v["id"]), tuple(v.get("aliases") or ()), tuple(v.get("fixed_in") or ()))
        for v in vulns
        if v.get("withdrawn") is None  # withdrawn advisories are skipped, as pip-audit does
    )
    if advisories:
        return Result(name, pinned, VULNERABLE, latest, advisories=advisories)
    return Result(name, pinned, CLEAN, latest)


def fetch_project(name: str, timeout: float = 15.0) -> dict | None:
    """The project JSON from PyPI; ``None`` on 404; FetchError on anything else that goes wrong."""
    full = PYPI_JSON.format(name=canonical_name(name))
    headers = {"Accept": "application/json", "User-Agent": "journeys-audit"}
    req = urllib.request.Request(full, headers=headers)  # noqa: S310 (fixed https URL)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (fixed https URL)
            return json.load(resp)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise FetchError(f"{full}: HTTP {e.code}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise FetchError(f"{full}: {reason}") from None
    except ValueError as e:
        raise FetchError(f"{full}: invalid JSON ({e})") from None


def audit(pins: Iterable[tuple[str, str]], other: Iterable[str], fetch: Callable[[str], dict | None]) -> list[Result]:
    results = [classify(name, version, fetch(name)) for name, version in pins]
    results += [Result(line, None, UNVERIFIED, reason="not a name==version pin") for line in other]
    return results


def exit_code(results: list[Result]) -> int:
    statuses = {r.status for r in results}
    if VULNERABLE in statuses:
        return EXIT_VULNERABLE
    if UNVERIFIED in statuses:
        return EXIT_UNVERIFIED
    return EXIT_CLEAN


def render(results: list[Result]) -> str:
    lines: list[str] = []
    vulnerable = [r for r in results if r.status == VULNERABLE]
    unverified = [r for r in results if r.status == UNVERIFIED]
    clean = [r for r in results if r.status == CLEAN]
    for r in vulnerable:
        lines.append(f"VULNERABLE {r.name}=={r.pinned} (latest release):")
        for a in r.advisories:
            aliases = ", ".join(a.aliases) or "-"
            fixed = ", ".join(a.fixed_in) or "no fix released"
            lines.append(f"  {a.id}  aliases: {aliases}  fixed_in: {fixed}")
    for r in unverified:
        pin = f"=={r.pinned}" if r.pinned is not None else ""
        lines.append(f"UNVERIFIED {r.name}{pin}: {r.reason}")
    lines.append("")
    lines.append(f"{'packages':<12}{len(results):>5}")
    lines.append(f"{'clean':<12}{len(clean):>5}   (pinned == latest release, no advisory)")
    lines.append(f"{'advisories':<12}{len(vulnerable):>5}")
    lines.append(f"{'unverified':<12}{len(unverified):>5}   (not the latest release: no advisory data here)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("requirements", help="a `pip freeze` file (name==version lines)")
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds per HTTP request")
    args = parser.parse_args(argv)
    try:
        with open(args.requirements, encoding="utf-8") as fh:
            pins, other = parse_requirements(fh.read())
    except OSError as e:
        print(f"audit_latest: error: cannot read {args.requirements}: {e.strerror}", file=sys.stderr)
        return EXIT_ERROR
    try:
        results = audit(pins, other, lambda name: fetch_project(name, args.timeout))
    except FetchError as e:
        print(f"audit_latest: error: cannot fetch {e}", file=sys.stderr)
        return EXIT_ERROR
    print(render(results))
    return exit_code(results)


if __name__ == "__main__":
    sys.exit(main())
