"""Strip outputs and execution counts from notebooks before committing them.

    python notebooks/strip_outputs.py notebooks/*.ipynb

``tests/test_notebooks.py`` fails on a committed notebook that still has outputs.
"""

from __future__ import annotations

import sys

import nbformat


def strip(path: str) -> bool:
    """Clear every code cell's outputs and execution count; return whether the file changed."""
    nb = nbformat.read(path, as_version=4)
    changed = False
    for cell in nb.cells:
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None):
            cell.outputs, cell.execution_count, changed = [], None, True
    if changed:
        nbformat.write(nb, path)
    return changed


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print(f"{p}: {'stripped' if strip(p) else 'clean'}")
