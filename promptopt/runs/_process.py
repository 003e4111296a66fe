"""Process identity and liveness: who runs a study, and whether that process still runs.

A run records ``{"pid", "host", "started"}`` (:func:`this_process`) on its study;
``started`` is the process's start time, so a later process that reuses the pid is
not taken for it. Only a process on this machine can be checked directly
(:func:`is_live_here`); workers elsewhere are judged by their heartbeat
(:mod:`promptopt.runs._workers`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (Linux), to tell it from a later one with its id."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return None if fields[0] == "Z" else fields[19]  # zombies count as gone


def is_running(pid: int, started: str | None) -> bool:
    """Whether process ``pid`` (started at ``started``, when known) runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    now = process_start(pid)
    if Path("/proc").is_dir():
        return now is not None and (started is None or now == started)
    return True


def this_process() -> dict[str, Any]:
    """This process's identity, as recorded on a study."""
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": process_start(os.getpid())}


def on_this_host(record: Mapping[str, Any]) -> bool:
    """Whether the process ``record`` describes ran on this machine."""
    return record.get("host") == socket.gethostname()


def is_live_here(record: Mapping[str, Any]) -> bool:
    """Whether ``record`` is another process of this machine that still runs."""
    pid = record.get("pid")
    return (isinstance(pid, int) and pid != os.getpid() and on_this_host(record)
            and is_running(pid, record.get("started")))
