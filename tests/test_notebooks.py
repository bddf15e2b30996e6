"""The notebooks in ``notebooks/`` run top to bottom, with tiny parameters injected right after
their ``parameters`` cell (papermill's convention), and show what they promise."""

from __future__ import annotations

import os

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = os.path.join(os.path.dirname(__file__), "..", "notebooks")
TINY = {
    "quickstart": "TRAIN_STEPS = 8_192\nNUM_SEEDS = 2",
    "imagination": "REAL_STEPS = 4_000\nMODEL_STEPS = 200\nPPO_STEPS = 16_384",
    "simple_atari_colab": 'LOOP_HPARAMS = "epochs=1"',
}
EXPECT = {  # text each notebook must print, and how many images it must show
    "quickstart": ("greedy return", 1),
    "imagination": ("trained only in imagination: greedy real return", 1),
    "simple_atari_colab": ("strategy: default strategy (CPU)", 2),
}


def run(name: str) -> nbformat.NotebookNode:
    nb = nbformat.read(os.path.join(NOTEBOOKS, f"{name}.ipynb"), as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    injected = nbformat.v4.new_code_cell(TINY[name])
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(at + 1, injected)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": NOTEBOOKS}}).execute()  # raises on errors
    return nb


@pytest.mark.parametrize("name", sorted(TINY))
def test_notebook_runs(name):
    nb = run(name)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    images = [o for o in outputs if "image/png" in o.get("data", {}) or "image/gif" in o.get(
        "data", {})]
    needle, num_images = EXPECT[name]
    assert needle in text, text[-2000:]
    assert len(images) >= num_images, [o.output_type for o in outputs]


def test_notebooks_are_stored_without_outputs():
    for name in TINY:
        nb = nbformat.read(os.path.join(NOTEBOOKS, f"{name}.ipynb"), as_version=4)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), name
