"""The rule for paths the product writes to (``pipeline.privacy.check_output_path``).

A path given by a user (``--db``, the report/export ``--out`` folder, the files written there) is made
absolute with every symlink resolved; it is refused when it is the root folder or lies inside a
system folder (/etc, /usr, /bin, /boot, /dev, /proc, /sys, /lib*, /sbin, /run, /var/lib, /var/run),
whatever symlinks lead there, and a file written into a folder must stay inside that folder after
resolving (a planted ``reports/report.html -> ~/.bashrc`` is refused). ``journeys forget`` applies it
to ``--db``, ``--out`` and ``--exports`` and to every file it rewrites.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.privacy import UnsafePath, check_output_path
from tests.reliability.conftest import copy_db
from tests.reliability.helpers import KEY, cli


@pytest.mark.parametrize("path", ["/", "/etc", "/etc/cron.d/journeys", "/usr/share/x", "/bin/x", "/proc/self/x",
                                  "/sys/kernel/x", "/boot/x", "/dev/sda", "/var/lib/x", "/lib/x"])
def test_system_folders_are_refused(path):
    with pytest.raises(UnsafePath, match="refusing"):
        check_output_path(path)


def test_ordinary_paths_resolve_and_pass(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert check_output_path("reports") == tmp_path / "reports"
    assert check_output_path(tmp_path / "a" / ".." / "b") == tmp_path / "b"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert check_output_path("~/out") == tmp_path / "out"


def test_symlinks_into_system_folders_or_out_of_the_target_folder_are_refused(tmp_path):
    (tmp_path / "to_etc").symlink_to("/etc")
    with pytest.raises(UnsafePath, match="system folder /etc"):
        check_output_path(tmp_path / "to_etc" / "report.html")
    reports, elsewhere = tmp_path / "reports", tmp_path / "home"
    reports.mkdir()
    elsewhere.mkdir()
    (reports / "report.html").symlink_to(elsewhere / ".bashrc")
    with pytest.raises(UnsafePath, match="outside the folder"):
        check_output_path(reports / "report.html", inside=reports)
    (reports / "ok.html").symlink_to(reports / "real.html")  # a link that stays inside is fine
    assert check_output_path(reports / "ok.html", inside=reports) == reports / "real.html"
    linked = tmp_path / "linked_reports"
    linked.symlink_to(reports)  # the folder itself may be a link (the user chose it)
    assert check_output_path(linked / "new.html", inside=linked) == reports / "new.html"


def test_forget_refuses_unsafe_output_folders(tmp_path, reference_db):
    db_path = copy_db(reference_db, tmp_path / "j.duckdb")
    refused = cli("forget", "C1000504", "--db", str(db_path), "--out", "/etc", JOURNEYS_PSEUDONYM_KEY=KEY)
    assert refused.returncode == 1 and "system folder /etc" in refused.stderr
    assert len([x for x in refused.stderr.splitlines() if x.strip()]) == 1
    os.symlink("/usr/lib", tmp_path / "exports")
    refused = cli("forget", "C1000504", "--db", str(db_path), "--exports", str(tmp_path / "exports"),
                  JOURNEYS_PSEUDONYM_KEY=KEY)
    assert refused.returncode == 1 and "system folder /usr" in refused.stderr
    assert Path(db_path).exists()
