"""notebooks/dropoff_exploration.ipynb runs top to bottom on the sample (read-only database)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow
NOTEBOOK = REPO / "notebooks" / "dropoff_exploration.ipynb"


def test_notebook_holds_no_business_logic():
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert "read_only=True" in code
    assert "from pipeline" in code
    for forbidden in ("select ", "group_by", ".agg(", "def ", "for "):
        assert forbidden not in code, forbidden
    assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code")  # committed without outputs


def test_notebook_executes_on_the_sample(sample_db, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("JOURNEYS_DB", str(sample_db))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(REPO / "notebooks")}})
    client.execute()
    printed = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
    assert "never reached" in printed
    assert "conversion" in printed and "->" in printed
