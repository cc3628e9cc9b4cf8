"""Security: generated MBPP code runs in a sandbox that contains it.

Each attack from the issue — a loop that never ends, a huge allocation, a fork bomb, writing outside
the working folder, opening a socket, killing its parent — runs as an MBPP "solution" followed by the
task's asserts. It must score as failed, the host process and a victim process must survive, the host's
files must be untouched, and no process of the sandbox may be left behind. The attacks run twice: with
all layers, and without the Python audit hook (so the OS-level layers alone are shown to hold).
"""
import os, signal, socket, subprocess, sys, time
from pathlib import Path

import pytest

from genome_nb.data import Example
from genome_nb.tasks import get_task
from genome_nb.sandbox import SandboxError, SandboxLimits, _namespace_prefix, run_sandboxed, sandbox_layers

FAST = SandboxLimits(timeout_s=4, cpu_s=1, memory_mb=512)
HOST_ISOLATION = _namespace_prefix() is not None or os.geteuid() == 0   # OS layers beyond the audit hook


def _session_procs(sid: int) -> list[int]:
    "Processes (host view) still in the sandbox's session."
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit(): continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue            # the process ended while we looked
        fields = stat[stat.rindex(")") + 2:].split()      # state, ppid, pgrp, session, ...
        if int(fields[3]) == sid and fields[0] not in "ZX": out.append(int(d.name))
    return out


@pytest.fixture
def victim(tmp_path):
    "A file and a process of the host that the sandboxed code attacks."
    f = tmp_path / "victim.txt"
    f.write_text("original")
    proc = subprocess.Popen(["sleep", "60"])
    yield f, proc
    proc.kill(); proc.wait()


def _attacks(victim_file: Path, victim_pid: int, port: int) -> dict[str, str]:
    return {
        "infinite loop": "while True:\n    pass",
        "huge memory": "x = bytearray(16 * 1024**3)\ny = [0] * (10**10)",
        "fork bomb": "import os\nwhile True:\n    os.fork()",
        "write outside": (f"open({str(victim_file)!r}, 'w').write('pwned')\n"
                          f"open({str(victim_file.parent / 'new.txt')!r}, 'w').write('pwned')"),
        "socket": f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\ns.sendall(b'pwned')",
        "kill parent": f"import os, signal\nos.kill({victim_pid}, signal.SIGKILL)\nos.kill(os.getppid(), signal.SIGKILL)",
    }


@pytest.mark.parametrize("audit", [True, False], ids=["all layers", "no audit hook"])
@pytest.mark.parametrize("attack", ["infinite loop", "huge memory", "fork bomb", "write outside", "socket", "kill parent"])
def test_attacks_are_contained(attack, audit, victim, tmp_path):
    if not audit and not HOST_ISOLATION:
        pytest.skip("no namespaces and not root here: the audit hook is the only barrier, tested with it on")
    vfile, vproc = victim
    listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen(1); listener.settimeout(0.2)
    port = listener.getsockname()[1]
    code = _attacks(vfile, vproc.pid, port)[attack]
    before = set(os.listdir(tmp_path))
    limits = SandboxLimits(timeout_s=FAST.timeout_s, cpu_s=FAST.cpu_s, memory_mb=FAST.memory_mb, audit_hook=audit)
    task = get_task("mbpp")
    ex = Example("mbpp/attack", {"text": "add", "tests": [], "test_setup_code": ""}, "assert add(2, 3) == 5\n",
                 None, {"code": ""})
    res = run_sandboxed(task.program(code, ex), limits)
    assert not res.passed and res.status in ("failed", "timeout")
    assert replace_limits_score(task, limits, code, ex) == 0.0           # scored as failed through the task too
    # the host and its files are untouched
    assert vproc.poll() is None, "the victim process was killed"
    assert vfile.read_text() == "original" and set(os.listdir(tmp_path)) == before
    with pytest.raises(socket.timeout):
        listener.accept()                                                 # nobody connected
    listener.close()
    # nothing of the sandbox is left running
    for _ in range(50):
        if not _session_procs(res.session): break
        time.sleep(0.1)
    assert _session_procs(res.session) == []


def replace_limits_score(task, limits, code, ex):
    from dataclasses import replace
    return replace(task, limits=limits, workers=1).score([code], [ex])["pass@1"]


def test_a_correct_solution_passes_and_a_wrong_one_fails():
    ok = run_sandboxed("import math, re, collections, heapq, itertools, functools, json, encodings.idna\n"
                       "def add(a, b):\n    return a + b\nassert add(2, 3) == 5\nprint('fine')\n")
    assert ok.passed and ok.status == "passed" and ok.returncode == 0 and "fine" in ok.stdout
    bad = run_sandboxed("def add(a, b):\n    return a - b\nassert add(2, 3) == 5\n")
    assert not bad.passed and bad.status == "failed" and "AssertionError" in bad.stderr


def test_leaving_early_or_hanging_is_not_passing():
    assert run_sandboxed("import sys\nsys.exit(0)\nassert False\n").status == "failed"
    assert run_sandboxed("import os\nos._exit(0)\n").status == "failed"
    r = run_sandboxed("import time\ntime.sleep(60)\n", SandboxLimits(timeout_s=1))
    assert r.status == "timeout" and not r.passed and r.returncode == -signal.SIGKILL


def test_working_folder_is_empty_writable_and_the_environment_clean():
    code = ("import os, sys\n"
            "assert os.listdir('.') == [], os.listdir('.')\n"
            "open('scratch.txt', 'w').write('ok'); assert open('scratch.txt').read() == 'ok'\n"
            "assert set(os.environ) <= {'PATH', 'LANG', 'LC_ALL', 'HOME', 'TMPDIR', 'LC_CTYPE'}, dict(os.environ)\n"
            "assert sys.flags.isolated and sys.flags.no_site\n"
            "assert sys.stdin.read() == ''\n")
    r = run_sandboxed(code)
    assert r.passed, r.stderr


def test_output_is_capped_by_the_file_size_limit():
    r = run_sandboxed("while True:\n    print('x' * 10000)\n", SandboxLimits(file_mb=1, timeout_s=5))
    assert not r.passed and len(r.stdout) <= 8192


@pytest.mark.skipif(_namespace_prefix() is None, reason="no namespaces here")
def test_namespaces_hide_the_host():
    code = ("import os\n"
            "assert os.getpid() == 1, os.getpid()\n"                        # a new PID namespace
            "assert sorted(int(p) for p in os.listdir('/proc') if p.isdigit()) == [1]\n"
            "import socket\nassert [n for _, n in socket.if_nameindex()] == ['lo']\n"           # a new network namespace
            "assert os.listdir('/tmp') == [] or all(n.startswith('.') for n in os.listdir('/tmp'))\n")
    r = run_sandboxed(code, SandboxLimits(audit_hook=False))
    assert r.passed, r.stderr
    assert "net+pid+mount namespaces" in r.layers


@pytest.mark.skipif(os.geteuid() != 0 or (_namespace_prefix() or ("--user",))[1:2] == ("--user",),
                    reason="privilege drop applies when the host runs as root")
def test_runs_as_nobody_when_the_host_is_root():
    r = run_sandboxed("import os\nassert os.getuid() == os.geteuid() == 65534\nassert os.getgroups() == []\n",
                      SandboxLimits(audit_hook=False))
    assert r.passed, r.stderr
    assert "uid nobody" in r.layers


def test_the_audit_hook_blocks_what_it_names():
    for code, word in [("import socket\nsocket.socket()", "socket"), ("import os\nos.system('true')", "os.system"),
                       ("import subprocess\nsubprocess.run(['true'])", "subprocess.Popen"),
                       ("import ctypes\nctypes.CDLL(None)", "ctypes"), ("import os\nos.remove('/etc/hostname')", "os.remove")]:
        r = run_sandboxed(code)
        assert not r.passed and f"sandbox: {word}" in r.stderr, (code, r.stderr)


def test_a_sandbox_that_cannot_set_up_raises_instead_of_scoring_zero():
    # an impossible limit makes the trusted wrapper fail before the program starts
    with pytest.raises(SandboxError, match="setup failed"):
        run_sandboxed("pass", SandboxLimits(nofile=10**12))


def test_layers_are_reported():
    layers = sandbox_layers()
    assert layers[0] == "process group" and "rlimits" in layers and "audit hook" in layers
    assert "audit hook" not in sandbox_layers(SandboxLimits(audit_hook=False))
