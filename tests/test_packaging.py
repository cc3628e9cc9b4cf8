"The project's own files agree with each other: requirements, exported package, README."
import configparser, filecmp, shlex, shutil, subprocess, sys
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _settings():
    cfg = configparser.ConfigParser(delimiters=["="])
    cfg.read(ROOT / "settings.ini", encoding="utf-8")
    return cfg["DEFAULT"]


def _norm(req: str) -> tuple[str, str]:
    r = Requirement(req)
    return r.name.lower().replace("_", "-"), str(r.specifier)


def test_settings_and_environment_yml_list_the_same_requirements():
    settings = {_norm(r) for r in shlex.split(_settings()["requirements"])}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    yml = {_norm(r) for r in pip if not r.startswith("-e")}
    assert settings == yml, f"only in settings.ini: {settings - yml}; only in environment.yml: {yml - settings}"
    assert len(settings) >= 15


def test_nbdev_settings_that_other_tools_rely_on():
    s = _settings()
    assert s["allowed_cell_metadata_keys"].split() == ["tags"]  # papermill's `parameters` tag survives nbdev_clean
    assert "slow" in s["tst_flags"].split()
    assert "vllm" in s["gpu_requirements"] and "vllm" not in s["requirements"]


def test_nbdev_export_leaves_no_diff(tmp_path):
    "Exporting the notebooks again reproduces genome_nb/ byte for byte."
    for name in ("settings.ini", "setup.py"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "nbs", tmp_path / "nbs")
    (tmp_path / "genome_nb").mkdir()
    shutil.copy(ROOT / "genome_nb" / "__init__.py", tmp_path / "genome_nb" / "__init__.py")
    subprocess.run([str(BIN / "nbdev_export")], cwd=tmp_path, check=True, capture_output=True)
    ours = sorted(p.name for p in (ROOT / "genome_nb").glob("*.py"))
    fresh = sorted(p.name for p in (tmp_path / "genome_nb").glob("*.py"))
    assert ours == fresh
    cmp = filecmp.cmpfiles(ROOT / "genome_nb", tmp_path / "genome_nb", ours, shallow=False)
    assert cmp[1] == [] and cmp[2] == [], f"genome_nb/ differs from the notebooks in {cmp[1] + cmp[2]}: run nbdev_export"


def test_readme_is_generated_from_index_notebook():
    out = subprocess.run([str(BIN / "jupyter"), "nbconvert", "--to", "markdown", "--stdout", "--log-level", "WARN",
                          str(ROOT / "nbs" / "index.ipynb")], check=True, capture_output=True, text=True).stdout
    assert (ROOT / "README.md").read_text(encoding="utf-8") == out, "README.md is stale: run `make export`"
    assert "make quickstart" in out and "make test" in out
