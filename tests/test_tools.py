"tools/refresh_outputs.py: a notebook's committed outputs are refreshed where it shows some, and nowhere else."
import importlib.util, sys
from pathlib import Path

import nbformat
import pytest

_spec = importlib.util.spec_from_file_location("refresh_outputs", Path(__file__).resolve().parents[1] / "tools" / "refresh_outputs.py")
ro = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(ro)


def _nb(tmp_path):
    cells = [nbformat.v4.new_code_cell("x = 6 * 7\nx", id="shown"),          # committed with an (old) output
             nbformat.v4.new_code_cell("y = x + 1\ny", id="quiet"),          # committed without outputs
             nbformat.v4.new_code_cell("import sys\nprint('log', file=sys.stderr)\nprint('kept')", id="mixed")]
    cells[0].outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "0"}, execution_count=1)]
    cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="old\n")]
    p = tmp_path / "demo.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), p)
    return p


def test_refresh_keeps_the_committed_choice_and_drops_stderr(tmp_path):
    p = _nb(tmp_path)
    assert ro.refresh(p) == ["shown", "mixed"]
    c = {c.id: c for c in nbformat.read(p, as_version=4).cells}
    assert c["shown"].outputs[0]["data"]["text/plain"] == "42"                 # refreshed, not the old "0"
    assert c["quiet"].outputs == []
    assert [(o.output_type, o.get("name"), o.get("text")) for o in c["mixed"].outputs] == [("stream", "stdout", "kept\n")]
    assert ro.refresh(p, add={"quiet"}) == ["shown", "quiet", "mixed"]        # --add shows one more
    assert nbformat.read(p, as_version=4).cells[1].outputs[0]["data"]["text/plain"] == "43"


def test_refresh_refuses_unknown_ids_and_cli_mains(tmp_path):
    p = _nb(tmp_path)
    with pytest.raises(SystemExit, match="no code cell with id"):
        ro.refresh(p, add={"nope"})
    nb = nbformat.read(p, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell('if __name__ == "__main__": main()', id="cli"))
    nbformat.write(nb, p)
    before = p.read_bytes()
    with pytest.raises(SystemExit, match="cannot run under a kernel"):
        ro.refresh(p)
    assert p.read_bytes() == before                                            # refused before anything ran or was written
