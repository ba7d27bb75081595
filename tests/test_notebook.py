"""examples/worksheet.ipynb runs top to bottom (in its quick mode), and is committed without outputs.

The notebook runs in a kernel of this interpreter: a kernel spec written to a temporary folder names
``sys.executable``, so whatever ``python3`` kernel a machine has installed plays no part. Without
``NAMEORIGIN_DATA`` the notebook reads tiny generated data (tests/conftest.py), so it never downloads.
"""

import json
import os
import re
import sys
from pathlib import Path

import pytest

from conftest import write_names_dir

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "worksheet.ipynb"
KERNEL = "nameorigin-test-python"


def test_notebook_is_committed_without_outputs():
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, "the notebook has no code cells"
    with_outputs = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and c.get("outputs")]
    counted = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and c.get("execution_count")]
    assert not with_outputs and not counted, (
        f"cells {with_outputs or counted} of {NOTEBOOK.name} hold outputs: strip them "
        f"(`nbstripout {NOTEBOOK.relative_to(NOTEBOOK.parents[1])}`) before committing"
    )


def test_notebook_never_shells_out_or_reaches_into_private_names():
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    source = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "subprocess" not in source and "\n!" not in "\n" + source and "%%bash" not in source
    assert not re.search(r"\._[a-z]", source), "a cell reaches into a private name"


def test_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("pandas")  # the notebook's tables
    pytest.importorskip("sklearn")  # the n-gram baseline
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "nameorigin test kernel",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("NAMEORIGIN_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("NAMEORIGIN_CACHE", str(tmp_path / "cache"))  # never touch the user's cache
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # quick sizes: threads would only wait on each other
    if not os.environ.get("NAMEORIGIN_DATA"):
        monkeypatch.setenv("NAMEORIGIN_DATA", str(write_names_dir(tmp_path)))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, kernel_name=KERNEL, timeout=300, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, when any cell raises
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    assert len(images) >= 6, f"expected the notebook's plots inline, got {len(images)} images"
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "Shevchenko" in text and "held-out accuracy" in text and "Ranked by held-out macro-F1" in text
