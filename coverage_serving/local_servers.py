"""Servers run together in the foreground (`coverage-serving dev`): their output passed through
while they run, all stopped when one stops or on Ctrl-C or SIGTERM, saying so in one line.

What each server prints while it shuts down (Dagster's "Shutting down Dagster services...",
uvicorn's "Finished server process", and the "Exception ignored in threading" traceback a
Python process prints when a second interrupt reaches it while it waits for its threads) is
not passed through: a person who pressed Ctrl-C learns only whether everything stopped."""

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

# How long a server may take to stop before it is killed: `dagster dev` waits up to 60 s for
# its webserver and daemon.
STOP_TIMEOUT_SECONDS = 90


@dataclass(frozen=True)
class Server:
    name: str
    command: Sequence[str]
    # Interrupt the server's whole process group, for a server that is a wrapper around
    # processes that do not hear from it; else only the server, which stops its own children.
    interrupt_group: bool = False


def run_until_interrupted(servers: Sequence[Server]) -> int:
    """Run every server until one exits, or until Ctrl-C or SIGTERM; 0 when they were stopped,
    1 when one exited by itself (its output says why)."""
    # Ctrl-C and SIGTERM (a process manager's stop) end the wait below the same way, even
    # when a parent started this process with SIGINT ignored (as shells do for `cmd &`).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    stopping = threading.Event()
    running = [_start(server, stopping) for server in servers]
    exited = None
    try:
        while exited is None:
            exited = next((s.name for s, p in running if p.poll() is not None), None)
            if exited is None:
                time.sleep(1)
    except KeyboardInterrupt:
        pass
    stopping.set()
    killed = [server.name for server, process in running if not _stop(server, process)]
    print(_summary(exited, killed), flush=True)
    return 1 if exited else 0


def _start(server: Server, stopping: threading.Event) -> tuple[Server, subprocess.Popen]:
    # Each server in its own session: Ctrl-C in the terminal reaches only this process, which
    # stops each server once (a second interrupt is what made them print tracebacks).
    process = subprocess.Popen(
        server.command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert process.stdout is not None  # PIPE above
    threading.Thread(target=_forward, args=(process.stdout, stopping), daemon=True).start()
    return server, process


def _forward(output: IO[bytes], stopping: threading.Event) -> None:
    for line in output:
        if not stopping.is_set():
            sys.stdout.buffer.write(line)
            sys.stdout.buffer.flush()


def _stop(server: Server, process: subprocess.Popen) -> bool:
    """Interrupt the server as Ctrl-C would and wait for it; False if it had to be killed."""
    if process.poll() is None:
        if server.interrupt_group:
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return False
    return True


def _summary(exited: str | None, killed: list[str]) -> str:
    cause = f"{exited} exited" if exited else "interrupted"
    if killed:
        return f"{cause}: stopped, {', '.join(killed)} killed after {STOP_TIMEOUT_SECONDS} s"
    return f"{cause}: every server stopped"
