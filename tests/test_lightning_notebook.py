"""lightning_app/studio.ipynb runs top to bottom on the demo config (nbclient, a real kernel)."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "lightning_app" / "studio.ipynb"


@pytest.mark.slow
def test_studio_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTEBOOK_OUTPUT_ROOT", str(tmp_path))  # the kernel inherits it
    reports = tmp_path / "reports" / "therapeutic_moe_stage1"
    reports.mkdir(parents=True)
    (reports / "report.json").write_text('{"decision": "proceed", "models": {"checkpoint": {"metrics": {"safety": {"value": 0.95}}}}}')
    monkeypatch.setenv("NOTEBOOK_REPORTS", str(tmp_path / "reports"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    text = "\n".join(
        output.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
    )
    assert "stage 1: therapeutic_moe_stage1, base model tiny" in text
    assert "lr 0.0002, max_steps -1, sequence 256" in text  # as loaded, before the cells change them
    assert "mental_health" in text and "⟦" in text  # the data figures and a labelled example
    final = tmp_path / "therapeutic_moe_stage1" / "checkpoint-final"
    assert (final / "adapter.safetensors").is_file()
    assert "'adapter.safetensors'" in text and " words" in text
    saved = (tmp_path / "therapeutic_moe_stage1.yaml").read_text()
    assert "max_steps: 4" in saved and "lr: 0.0005" in saved
    spec = next(line for line in text.splitlines() if line.startswith('{"name": "therapeutic-moe-stage1-fit-'))
    assert f"--config {tmp_path}/therapeutic_moe_stage1.yaml" in spec  # the saved YAML is what the job runs
    assert '"preflight": ' in spec  # the dry run: the spec and the preflight, nothing submitted
    table = text[text.index("reports under"):].splitlines()
    assert table[1].split() == ["therapeutic_moe_stage1"] and table[2].split() == ["decision", "proceed"]
    assert table[3].split() == ["safety", "0.950"]
