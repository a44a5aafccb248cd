"""Jobs the page starts (train, evaluate, export): CLI subprocesses that outlive the browser.

A job is `python -m tuneforge <command> <yaml>` started in its own session (so the page's signals never
reach it) with its output going to a file in the run directory, never to a pipe: nobody has to read a
pipe for it to go on, so closing the browser neither stops nor stalls it. The registry is process-wide,
not per browser session: a page opened later finds the running job and shows it again.

Abort is polite first: SIGINT (the CLI stops like Ctrl-C), then SIGTERM, then SIGKILL, waiting after each.
The job starts with SIGINT at its default even when the server ignores it (`nohup tuneforge webui &` runs it
with SIGINT ignored, and an ignored signal stays ignored across fork and exec, Python keeping it so), or Abort's
SIGINT would do nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

CONSOLE_LOG = "webui_console.log"  # the job's stdout and stderr, in its run directory
JOB_FILE = "webui_job.json"  # pid, command and start time, for a page (or server) that comes back
ABORT_WAITS = (10.0, 5.0, 5.0)  # seconds to wait after SIGINT, SIGTERM, SIGKILL


@dataclass
class Job:
    kind: str  # train | eval | export
    command: list[str]
    output_dir: str
    process: subprocess.Popen[bytes] | None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    returncode: int | None = None
    aborted: bool = False
    # Set for a job adopted from its JOB_FILE (started by an earlier server): no Popen, only the pid.
    pid: int | None = None

    @property
    def console_log(self) -> str:
        return os.path.join(self.output_dir, CONSOLE_LOG)

    @property
    def running(self) -> bool:
        if self.process is not None:
            self._collect(self.process.poll())
        elif self.finished is None and not _alive(self.pid):
            self.finished = time.time()  # an adopted job ended; its exit code went to the server that started it
        return self.returncode is None and self.finished is None

    def _collect(self, returncode: int | None) -> None:
        if returncode is not None and self.returncode is None:
            self.returncode, self.finished = returncode, time.time()

    @property
    def status(self) -> str:
        if self.running:
            return "running"
        if self.aborted:
            return "aborted"
        if self.returncode is None:
            return "ended"
        return "finished" if self.returncode == 0 else f"failed (exit code {self.returncode})"

    def console_tail(self, lines: int = 40) -> str:
        try:
            with open(self.console_log, encoding="utf-8", errors="replace") as handle:
                return "".join(handle.readlines()[-lines:])
        except OSError:
            return ""


class JobRegistry:
    """At most one job per kind at a time, shared by every browser session of this server."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def get(self, kind: str) -> Job | None:
        return self._jobs.get(kind)

    def start(self, kind: str, args: list[str], output_dir: str, env: dict[str, str] | None = None,
              program: list[str] | None = None) -> Job:
        """Run `python -m tuneforge <args>` (or `program + args`) in the background; RuntimeError while a
        job of this kind runs."""
        with self._lock:
            current = self._jobs.get(kind)
            if current is not None and current.running:
                raise RuntimeError(f"a {kind} job is already running ({current.output_dir}); abort it first")
            os.makedirs(output_dir, exist_ok=True)
            command = [*(program or [sys.executable, "-m", "tuneforge"]), *args]
            with open(os.path.join(output_dir, CONSOLE_LOG), "w", encoding="utf-8") as console:
                process = subprocess.Popen(command, stdout=console, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, start_new_session=True,
                                           env=_child_env(env), preexec_fn=_default_sigint)
            job = Job(kind, command, output_dir, process)
            self._jobs[kind] = job
            _write_job_file(job)
            # Reaps the process as soon as it ends, whether or not a page is looking.
            threading.Thread(target=lambda: job._collect(process.wait()), daemon=True,
                             name=f"tuneforge-{kind}-reaper").start()
            return job

    def abort(self, kind: str, waits: tuple[float, float, float] = ABORT_WAITS) -> Job | None:
        """Stop the job of this kind and wait until it has ended. Returns it (None if there is none)."""
        job = self._jobs.get(kind)
        if job is None or not job.running:
            return job
        pid = job.process.pid if job.process is not None else job.pid
        if pid is None:  # not reached: a running job has a Popen or (adopted) its pid
            return job
        job.aborted = True
        for sig, wait in zip((signal.SIGINT, signal.SIGTERM, signal.SIGKILL), waits):
            try:
                os.killpg(pid, sig)  # the whole session: workers of a launcher go too
            except ProcessLookupError:
                break
            if _wait(job, wait):
                break
        return job

    def adopt(self, root: str) -> list[Job]:
        """Take over the jobs still running under `root` that an earlier server started (from their
        JOB_FILE), so a restarted web UI shows and can abort them."""
        adopted = []
        for folder, subfolders, files in os.walk(root) if os.path.isdir(root) else ():
            subfolders[:] = [name for name in subfolders if not name.startswith(("checkpoint-", "."))]
            if JOB_FILE not in files:
                continue
            try:
                with open(os.path.join(folder, JOB_FILE), encoding="utf-8") as handle:
                    record = json.load(handle)
            except (OSError, json.JSONDecodeError):
                continue
            kind, pid = record.get("kind"), record.get("pid")
            current = self._jobs.get(kind)
            if not isinstance(pid, int) or not _alive(pid) or (current is not None and current.running):
                continue
            job = Job(kind, record.get("command", []), folder, None, started=record.get("started", time.time()),
                      pid=pid)
            self._jobs[kind] = job
            adopted.append(job)
        return adopted


def _alive(pid: int | None) -> bool:
    """The process exists and is not a zombie."""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _wait(job: Job, timeout: float) -> bool:
    """Whether the job ended within `timeout` seconds."""
    if job.process is not None:
        try:
            job._collect(job.process.wait(timeout=timeout))
            return True
        except subprocess.TimeoutExpired:
            return False
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not job.running:
            return True
        time.sleep(0.1)
    return not job.running


def _child_env(extra: dict[str, str] | None) -> dict[str, str]:
    """The server's environment, with this tuneforge first on the path: the job runs the server's code
    even when another copy is installed."""
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # .../tuneforge
    path = [os.path.dirname(package_root), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, **(extra or {}), "PYTHONPATH": os.pathsep.join(path), "PYTHONUNBUFFERED": "1"}


def _write_job_file(job: Job) -> None:
    record = {"kind": job.kind, "pid": job.process.pid if job.process else None, "command": job.command,
              "started": job.started}
    with open(os.path.join(job.output_dir, JOB_FILE), "w", encoding="utf-8") as handle:
        json.dump(record, handle)


# The server's one registry.
JOBS = JobRegistry()


def _default_sigint() -> None:
    """Runs in the forked child before exec: SIGINT back to its default, so that the job's Python installs
    its KeyboardInterrupt handler. (Only this async-signal-safe call: preexec_fn runs in a copy of a
    multi-threaded server.)"""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
