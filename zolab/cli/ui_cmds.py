"""``zolab ui``: start the Streamlit dashboard on this machine.

Binds to 127.0.0.1 by default (the dashboard can launch jobs: exposing it is a deliberate
``--host 0.0.0.0``). The database is checked (and migrated on first use) before Streamlit starts,
so a bad URL is one clear error instead of a broken page.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer

from zolab.cli.common import DB_OPTION, EXIT_INTERNAL, console, fail

APP = Path(__file__).resolve().parent.parent / "ui" / "app.py"


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
    try:
        code = subprocess.call(streamlit_command(port, host), env=env)
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("ui")(ui)
