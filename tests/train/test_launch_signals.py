"""A torchrun worker dies with its launcher (PR_SET_PDEATHSIG), even when the launcher is killed outright."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
# The "launcher": starts a "worker" that asks to die with it and then sleeps; prints the worker's pid.
LAUNCHER = """
import os, subprocess, sys, time
worker = subprocess.Popen([sys.executable, "-c", "import os, sys, time; "
                           "from tuneforge.train.launch.signals import die_with_launcher; "
                           "die_with_launcher(int(sys.argv[1])); print('ready', flush=True); time.sleep(120)",
                           str(os.getpid())], stdout=subprocess.PIPE, text=True, start_new_session=True)
assert worker.stdout.readline().strip() == "ready"
print(worker.pid, flush=True)
time.sleep(120)
"""


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_worker_dies_when_its_launcher_is_killed():
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(SRC)})
    worker = int(launcher.stdout.readline())
    assert _alive(worker)
    launcher.send_signal(signal.SIGKILL)  # no chance to tell its workers anything
    launcher.wait()
    deadline = time.time() + 10
    while _alive(worker) and time.time() < deadline:
        time.sleep(0.05)
    assert not _alive(worker), "the worker outlived its launcher"
