#!/usr/bin/env python3
"""Inserts a subsampling cell into a notebook, right after the cell that loads
its data, for the lite variant.

The blueprint's notebook has no "parameters" cell and never reads max_cells or
max_genes, so papermill's injected parameters alone change nothing. This finds
the first code cell that assigns the result of a read call at top level (for
example "adata = sc.read(output)" or "adata = ad.read_h5ad(path)"; indented
reads inside an if, such as a download step, do not count), and inserts after
it a cell that keeps MAX_CELLS cells (a seeded random sample) and the
MAX_GENES genes with the most counts, then prints the shape, which papermill's
--log-output puts in papermill.log ("lite subsample: ...").

usage: subsample-notebook.py IN OUT --max-cells N --max-genes N
Exit status: 0 with one line saying where the cell went; 1 with one line
saying why when no loading cell is found or the notebook does not parse.
"""

import argparse
import json
import re
import sys

# "name = something.read...(" at the start of a line, after cell magics.
LOAD_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*[A-Za-z_][A-Za-z0-9_.]*\bread[A-Za-z0-9_]*\(")
MARK = "gpu-real-8-step-workflow: lite subsample"

CELL = """\
# {mark} (inserted by subsample-notebook.py)
import numpy as _np
_max_cells, _max_genes = {cells}, {genes}
_before = {var}.shape
if {var}.n_obs > _max_cells:
    _rows = _np.sort(_np.random.default_rng(0).choice({var}.n_obs, _max_cells, replace=False))
    {var} = {var}[_rows].copy()
if {var}.n_vars > _max_genes:
    _counts = _np.asarray({var}.X.sum(axis=0)).ravel()
    _cols = _np.sort(_np.argsort(-_counts, kind="stable")[:_max_genes])
    {var} = {var}[:, _cols].copy()
print(f"lite subsample: {{_before[0]}} x {{_before[1]}} -> {{{var}.n_obs}} cells x {{{var}.n_vars}} genes")
"""


def source_text(cell):
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def find_load(cells):
    """Returns (index, variable) of the first cell that loads the data."""
    for i, cell in enumerate(cells):
        if cell.get("cell_type") != "code":
            continue
        for line in source_text(cell).splitlines():
            if line.startswith(("%", "!")):
                continue
            m = LOAD_RE.match(line)
            if m:
                return i, m.group(1)
    return None, None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--max-cells", type=int, required=True)
    ap.add_argument("--max-genes", type=int, required=True)
    args = ap.parse_args()
    if args.max_cells <= 0 or args.max_genes <= 0:
        print("subsample-notebook: error: --max-cells and --max-genes must be positive",
              file=sys.stderr)
        return 1
    try:
        with open(args.input, encoding="utf-8") as f:
            nb = json.load(f)
        cells = nb["cells"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"subsample-notebook: error: {args.input} is not a notebook: {e}", file=sys.stderr)
        return 1
    if any(MARK in source_text(c) for c in cells):
        print(f"subsample-notebook: error: {args.input} already has a subsampling cell",
              file=sys.stderr)
        return 1
    index, var = find_load(cells)
    if index is None:
        print(f"subsample-notebook: error: no cell of {args.input} loads the data "
              "(a top-level \"name = ...read...(\" line); cannot subsample", file=sys.stderr)
        return 1
    text = CELL.format(mark=MARK, var=var, cells=args.max_cells, genes=args.max_genes)
    cell = {"cell_type": "code", "execution_count": None,
            "metadata": {"tags": ["gpu-workflow-subsample"]}, "outputs": [],
            "source": text.splitlines(keepends=True)}
    if nb.get("nbformat", 4) >= 4 and nb.get("nbformat_minor", 0) >= 5:
        cell["id"] = "gpu-workflow-subsample"
    cells.insert(index + 1, cell)
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(nb, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"subsample-notebook: inserted the subsampling cell ({args.max_cells} cells, "
          f"{args.max_genes} genes of {var}) after cell {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
