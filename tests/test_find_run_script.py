"""scripts/find-run.py (the Makefile's way to name a trained run): the newest finished run of a method
and seed, or exit code 1 and a line saying what is missing."""

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "find-run.py"


def _find(*args):
    command = [sys.executable, str(SCRIPT), *args]
    return subprocess.run(command, capture_output=True, text=True, env=os.environ)


def test_find_run_names_the_newest_finished_run_of_a_seed():
    from talkbench import pipeline
    from talkbench.config import load_config

    configs = [load_config("template", preset="tiny", seed=s) for s in (0, 3)]
    ids = [pipeline.run(cfg, progress=False).run_id for cfg in configs]
    out = _find("--dataset", "synthtalk", "--method", "template", "--seed", "3")
    assert out.returncode == 0 and out.stdout.strip() == ids[1]
    missing = _find("--dataset", "synthtalk", "--method", "template", "--seed", "5")
    assert missing.returncode == 1 and "no finished template run of seed 5 on synthtalk" in missing.stderr
