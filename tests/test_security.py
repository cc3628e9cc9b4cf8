"""Security of the MBPP sandbox beyond tests/test_sandbox.py: reading the host's files, leaving a process behind,
printing gigabytes, filling the disk with files.

Each attack runs under three arrangements of the layers: all of them; the OS layers alone (namespaces, uid,
rlimits, no audit hook); the audit hook alone (no namespaces) — so each barrier is shown to hold by itself
where this machine has it. With neither namespaces nor the audit hook there is no isolation to test.
"""
import ast, os, signal, time
from pathlib import Path

import pytest

from genome_nb.data import Example
from genome_nb.models import cache_dir
from genome_nb.tasks import get_task
from genome_nb.sandbox import SandboxLimits, _child_lib, _namespace_prefix, run_sandboxed, sandbox_layers

NS = _namespace_prefix() is not None
ROOT = Path(__file__).resolve().parents[1]
LAYERS = {
    "all layers": SandboxLimits(timeout_s=5, cpu_s=2),
    "OS layers only": SandboxLimits(timeout_s=5, cpu_s=2, audit_hook=False),
    "audit hook only": SandboxLimits(timeout_s=5, cpu_s=2, namespaces=False),
}


def layers(name):
    if name == "OS layers only" and not NS:
        pytest.skip("no namespaces here: without the audit hook nothing would isolate the program")
    return LAYERS[name]


def score(code: str, limits: SandboxLimits) -> float:
    "pass@1 of `code` as an MBPP answer whose asserts hold for any program that runs to the end."
    from dataclasses import replace
    ex = Example("mbpp/attack", {"text": "t", "tests": [], "test_setup_code": ""}, "assert True\n", None, {"code": ""})
    return replace(get_task("mbpp"), limits=limits, workers=1).score([code], [ex])["pass@1"]


def host_secrets() -> dict[str, bytes]:
    "Files of the host a program has no business reading, with a piece of their content to look for."
    out = {"this test file": Path(__file__), "the package source": ROOT / "genome_nb" / "tasks.py"}
    if Path("/etc/shadow").is_file(): out["/etc/shadow"] = Path("/etc/shadow")
    for d in (cache_dir(), Path.home() / ".cache"):                    # caches: model weights, tokens
        f = next((p for p in sorted(d.rglob("*"))[:200] if p.is_file() and p.stat().st_size > 16), None) if d.is_dir() else None
        if f is not None: out[f"cache file {f.name}"] = f; break
    data = Path("/work/shared/data/SOURCES.md")
    if data.is_file(): out["the benchmark data"] = data
    return {k: (str(p), p.read_bytes()[:48]) for k, p in out.items()}


@pytest.mark.parametrize("arrangement", list(LAYERS))
def test_host_files_cannot_be_read(arrangement):
    limits = layers(arrangement)
    for what, (path, head) in host_secrets().items():
        code = f"data = open({path!r}, 'rb').read()\nprint(data[:48])\n"
        r = run_sandboxed(code, limits)
        assert not r.passed and repr(head)[2:-1][:24] not in r.stdout, (what, r.stdout[:200])
        assert score(code, limits) == 0.0
    # listing folders of the host shows nothing of them: at most the path to the interpreter's own library
    on_lib_path = {part for p in _child_lib() for part in Path(p).parts}
    for folder in (ROOT, Path.home(), ROOT.parent, Path("/")):
        r = run_sandboxed(f"import os\nprint(sorted(os.listdir({str(folder)!r})))\n", limits)
        if folder == Path("/"):
            if r.passed: assert arrangement == "OS layers only"     # the top level shows, its folders are empty
            continue
        seen = set(ast.literal_eval(r.stdout.strip())) if r.passed else set()
        assert seen <= on_lib_path, (folder, seen - on_lib_path)


@pytest.mark.skipif(not NS, reason="no namespaces here")
def test_the_interpreter_still_works_when_the_host_is_hidden():
    r = run_sandboxed("import json, re, hashlib, collections, heapq, math, decimal, fractions, datetime, sqlite3\n"
                      "assert json.loads('[1]') == [1] and hashlib.sha256(b'').hexdigest().startswith('e3b0')\n"
                      "import os\nassert os.listdir('/home') == [] or not os.path.isdir('/home')\n", SandboxLimits(audit_hook=False))
    assert r.passed, r.stderr
    assert "host folders hidden" in r.layers


def leftovers(marker: str) -> list[int]:
    "Host processes whose command line carries `marker`."
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit(): continue
        try: cmd = (d / "cmdline").read_bytes()
        except OSError: continue
        if marker.encode() in cmd: out.append(int(d.name))
    return out


BACKGROUND = {
    "double fork + setsid + exec": "import os\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
                                   "        os.execv('/bin/sleep', ['sleep', '{m}'])\n    os._exit(0)\nos.wait()\n",
    "nohup in a new session": "import subprocess\nsubprocess.Popen(['nohup', 'sleep', '{m}'], start_new_session=True,\n"
                              "                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n",
    "daemonised python": "import os, sys\nif os.fork() == 0:\n    os.setsid()\n"
                         "    os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep({m})'])\n",
}


@pytest.mark.parametrize("arrangement", list(LAYERS))
@pytest.mark.parametrize("how", list(BACKGROUND))
def test_no_background_process_is_left_behind(how, arrangement):
    limits = layers(arrangement)
    marker = f"{300 + (time.time_ns() % 10**6) / 10**6:.6f}"           # a sleep length no other process uses
    r = run_sandboxed(BACKGROUND[how].replace("{m}", marker), limits)
    for _ in range(30):
        if not leftovers(marker): break
        time.sleep(0.1)
    left = leftovers(marker)
    for pid in left: os.kill(pid, signal.SIGKILL)
    assert left == [], f"{how} left {left} running ({r.status}, {r.stderr[-200:]})"


@pytest.mark.parametrize("arrangement", list(LAYERS))
@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_printing_gigabytes_is_capped_and_fails(stream, arrangement):
    limits = layers(arrangement)
    other = "stderr" if stream == "stdout" else "stdout"
    code = (f"import sys\nchunk, n = 'x' * (1 << 20), 0\ntry:\n    for n in range(4096):\n"          # 4 GiB
            f"        sys.{stream}.write(chunk); sys.{stream}.flush()\n"
            f"except OSError as e:\n    sys.{other}.write('capped after %d MB: %s\\n' % (n, e)); sys.{other}.flush(); raise\n")
    r = run_sandboxed(code, limits)
    assert not r.passed and r.status == "failed"                      # stopped by the file-size limit, not a timeout
    assert len(r.stdout) <= 8192 and len(r.stderr) <= 8192            # the host keeps only the tails
    report = getattr(r, other).split("capped after ")[1]
    assert int(report.split()[0]) <= limits.file_mb and "File too large" in report   # at most file_mb reached the disk
    assert score(code, limits) == 0.0


@pytest.mark.skipif(not NS, reason="the working folder is a tmpfs of its own only inside a mount namespace")
@pytest.mark.parametrize("audit", [True, False], ids=["all layers", "OS layers only"])
def test_many_files_cannot_fill_the_host_disk(audit):
    code = ("import os\nn = 0\ntry:\n    for n in range(1, 10**6):\n"
            "        with open('f%d' % n, 'wb') as f: f.write(b'x' * (1 << 20))\n"
            "except OSError as e:\n    print('stopped after', n - 1, 'MB:', e, flush=True)\n    raise\n")
    r = run_sandboxed(code, SandboxLimits(timeout_s=20, cpu_s=10, file_mb=1, disk_mb=8, audit_hook=audit))
    assert not r.passed and "No space left on device" in r.stderr, r.stderr[-300:]
    assert int(r.stdout.split("stopped after")[1].split()[0]) <= 8
    assert "working folder on a 8 MB tmpfs" in r.layers


def test_layers_name_the_new_barriers():
    all_ = sandbox_layers()
    if NS:
        assert "host folders hidden" in all_ and "working folder on a 64 MB tmpfs" in all_
    assert "host folders hidden" not in sandbox_layers(SandboxLimits(hide_host=False))
    assert not any("tmpfs" in l for l in sandbox_layers(SandboxLimits(namespaces=False)))
