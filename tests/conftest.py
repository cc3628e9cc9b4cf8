import os, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def history(run_dir):
    "The records of a run's history.jsonl."
    import json
    return [json.loads(l) for l in (Path(run_dir) / "history.jsonl").read_text().splitlines()]


class SpyTask:
    "Delegates to a task and records which splits were read, and how many history lines existed then."
    def __init__(self, task, log, run_dir):
        self._task, self._log, self._run_dir = task, log, Path(run_dir)
    def __getattr__(self, name): return getattr(self._task, name)
    def examples(self, split, seed=0, n=None, draw=None):
        done = len(history(self._run_dir)) if (self._run_dir / "history.jsonl").is_file() else 0
        self._log.append((split, done))
        return self._task.examples(split, seed=seed, n=n, draw=draw)
