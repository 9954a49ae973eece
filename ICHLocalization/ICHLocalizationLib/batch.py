"""Long work in a separate process: `ich-localize` on a batch, `ich-train` on a dataset, run by the
Python that runs us (Slicer's PythonSlicer inside Slicer), so the caller's thread and MRML scene
are never used.

A thread reads the child's output line by line; `cancel()` interrupts it the way Ctrl+C does, so
`ich-localize` keeps its finished scans (a rerun resumes) and `ich-train` its last checkpoint.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable, List, Optional

PROGRESS = re.compile(r"^\[(\d+)/(\d+)\] ")


def python_executable() -> str:
    """PythonSlicer inside Slicer (whose own executable is the application), else this interpreter."""
    return shutil.which("PythonSlicer") or sys.executable


class ChildProcess:
    """`python -m MODULE ARGS` with this package (and the folders in `python_path`) importable;
    `on_line` sees each output line, on the reader thread."""

    def __init__(self, module: str, args, on_line: Optional[Callable[[str], None]] = None, env=None, python_path=()):
        environment = dict(os.environ, **(env or {}))
        roots = [str(Path(__file__).resolve().parent.parent), *map(str, python_path), environment.get("PYTHONPATH")]
        environment["PYTHONPATH"] = os.pathsep.join(r for r in roots if r)
        environment["PYTHONUNBUFFERED"] = "1"
        self.command = [python_executable(), "-m", module, *map(str, args)]
        self.lines: List[str] = []
        self._on_line = on_line
        flags = subprocess.CREATE_NEW_PROCESS_GROUP if os.name == "nt" else 0
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env=environment, creationflags=flags)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            if self._on_line:
                self._on_line(line)

    @property
    def returncode(self) -> Optional[int]:
        """The exit status once the child has ended and its output is read; None while it runs."""
        if self.process.poll() is None:
            return None
        self._reader.join(timeout=5)
        return self.process.returncode

    def wait(self, timeout=None) -> int:
        self.process.wait(timeout)
        return self.returncode

    def cancel(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.CTRL_BREAK_EVENT if os.name == "nt" else signal.SIGINT)


def scale_args(workers=None, scheduler=None) -> List[str]:
    """ich-localize's Dask options: a local cluster of `workers` processes, or an existing cluster given
    by its scheduler address or by a `dask.distributed.Client` connected to it."""
    if scheduler is not None:
        address = getattr(getattr(scheduler, "scheduler", None), "address", scheduler)
        return ["--scheduler", str(address)]
    return ["--workers", str(int(workers))] if workers else []


class BatchProcess(ChildProcess):
    """`ich-localize` on many scans; `fraction` follows its "[i/n] case: status" lines. Exit status as
    ich-localize's: 0 all done, 1 a scan failed (recorded in summary.csv), 2 nothing started, 130 cancelled."""

    def __init__(self, paths, output_dir, methods=("cascade", "mil", "unet"), device="auto", overwrite=False,
                 extra_args=()):
        self.fraction = 0.0
        args = [*paths, "--out", output_dir, "--methods", ",".join(methods), "--device", device]
        super().__init__("ICHLocalizationLib.cli", args + (["--overwrite"] if overwrite else []) + list(extra_args),
                         on_line=self._progress)

    def _progress(self, line):
        match = PROGRESS.match(line)
        if match:
            self.fraction = int(match.group(1)) / max(1, int(match.group(2)))
