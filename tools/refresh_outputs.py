"""Re-execute notebooks and refresh the outputs they commit (`make outputs NBS="nbs/08_evolution.ipynb ..."`).

The notebooks in nbs/ commit the outputs that teach (a small table, a plot, a printed population) and no logs. Which
cells those are is decided once, by hand, and kept in the notebook itself: a code cell that has outputs in the
committed copy gets its outputs refreshed; every other cell is left without outputs. `--add ID,...` makes more cells
show theirs (a cell id is the `id` field of the cell, shown by `nbdev_clean`'d JSON). Stderr streams (warnings,
progress bars) and widget views are dropped from every cell, because they change from run to run and teach nothing.

Run `nbdev_clean` afterwards (the Makefile target does) to strip execution counts and metadata. Notebooks whose cells
start a command-line `main` under `if __name__ == "__main__"` (13_cli) cannot run under a kernel and are refused.
"""
from __future__ import annotations
import argparse, sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

WIDGET = "application/vnd.jupyter.widget-view+json"


def teaching_outputs(outputs: list) -> list:
    "The outputs worth committing: everything but stderr streams and widget views."
    return [o for o in outputs
            if not (o.get("output_type") == "stream" and o.get("name") == "stderr") and WIDGET not in o.get("data", {})]


def refresh(path: Path, add: set[str] = frozenset(), timeout: int = 3600) -> list[str]:
    "Execute the notebook at `path` in its folder and rewrite it in place; returns the ids of the cells that show outputs."
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    if unknown := add - {c.id for c in code}:
        raise SystemExit(f"{path}: no code cell with id(s) {sorted(unknown)}")
    if any('if __name__ == "__main__"' in c.source for c in code):
        raise SystemExit(f"{path}: a cell runs a command-line main under __main__; it cannot run under a kernel")
    keep = {c.id for c in code if c.get("outputs")} | set(add)
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    for c in code:
        c.outputs = teaching_outputs(c.outputs) if c.id in keep else []
        c.execution_count = None
    nbformat.write(nb, path)
    return [c.id for c in code if c.outputs]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebooks", nargs="+", type=Path)
    ap.add_argument("--add", default="", help="comma-separated ids of more cells whose outputs to keep (one notebook only)")
    a = ap.parse_args(argv)
    add = {s for s in a.add.split(",") if s}
    if add and len(a.notebooks) > 1: ap.error("--add names cells of one notebook: pass exactly one")
    for p in a.notebooks:
        if not p.is_file(): ap.error(f"{p}: no such notebook")
        shown = refresh(p, add)
        print(f"{p}: outputs in {len(shown)} cell(s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
