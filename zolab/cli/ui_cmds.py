"""``zolab ui``: start the Streamlit dashboard on this machine.

Binds to 127.0.0.1 by default (the dashboard can launch jobs: exposing it is a deliberate
``--host 0.0.0.0``). The database is checked (and migrated on first use) before Streamlit starts,
so a bad URL is one clear error instead of a broken page.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import typer

from zolab.cli.common import DB_OPTION, EXIT_INTERNAL, console, fail

APP = Path(__file__).resolve().parent.parent / "ui" / "app.py"
#: seconds Streamlit gets to stop after a forwarded SIGTERM/SIGINT before it is killed
STOP_GRACE_S = 10.0


def streamlit_command(port: int, host: str) -> list[str]:
    """The ``streamlit run`` command line: headless, no telemetry, no file watcher, 1 MB uploads."""
    from zolab.platform.parsers.source import MAX_BYTES

    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.port", str(port),
        "--server.address", host,
        "--server.headless", "true",
        "--server.fileWatcherType", "none",
        "--server.runOnSave", "false",
        "--server.maxUploadSize", str(max(1, MAX_BYTES // 1_000_000)),
        "--browser.gatherUsageStats", "false",
        "--global.developmentMode", "false",
        "--client.toolbarMode", "minimal",
    ]


def ui(
    port: int = typer.Option(8501, "--port", help="TCP port to serve on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (default: this machine only)."),
    db: str = DB_OPTION,
) -> None:
    """Start the dashboard: upload plans, watch jobs, read leaderboards."""
    from zolab import config
    from zolab.db.errors import DatabaseError
    from zolab.db.session import get_engine, safe_url

    url = config.db_url(db)
    try:
        get_engine(url)
    except DatabaseError as exc:
        fail(str(exc), EXIT_INTERNAL)
    env = {**os.environ, "ZOLAB_DB": url}
    console.print(f"zolab dashboard on http://{host}:{port}  (database {safe_url(url)}; Ctrl-C stops it)")
    raise typer.Exit(serve(streamlit_command(port, host), env))


def serve(command: list[str], env: dict[str, str], grace_s: float = STOP_GRACE_S) -> int:
    """Run Streamlit as a child and stay its parent until it has exited.

    SIGTERM and SIGINT sent to ``zolab ui`` are forwarded to Streamlit and waited for (killed after
    ``grace_s``), so stopping ``zolab ui`` (a service manager, ``kill``, Ctrl-C) never leaves a
    re-parented Streamlit serving the port. A stop we forwarded exits 0."""
    proc = subprocess.Popen(command, env=env)
    stop: dict[str, float] = {}

    def forward(signum: int, _frame: object) -> None:
        stop.setdefault("at", time.monotonic())
        if proc.poll() is None:
            proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            try:
                code = proc.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if "at" in stop and time.monotonic() - stop["at"] > grace_s:
                    proc.kill()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if proc.poll() is None:  # an exception in the loop: never leave the child behind
            proc.kill()
            proc.wait()
    return 0 if "at" in stop else code


def register(app: typer.Typer) -> None:
    app.command("ui")(ui)
