"""``zolab ui`` forwards SIGTERM/SIGINT to Streamlit and waits for it: nothing is left serving."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from zolab.cli.ui_cmds import serve

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import signal, sys, time
def stop(signum, frame):
    open(sys.argv[1], "w").write(str(signum))
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
open(sys.argv[1] + ".ready", "w").close()
while True:
    time.sleep(0.05)
"""
STUBBORN = """
import signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
open(sys.argv[1] + ".ready", "w").close()
while True:
    time.sleep(0.05)
"""


def _signal_self_when_ready(marker: Path, signum: int) -> threading.Thread:
    def go() -> None:
        deadline = time.monotonic() + 30
        while not Path(f"{marker}.ready").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signum)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_forwards_the_signal_and_waits(tmp_path, signum):
    marker = tmp_path / "got"
    before = signal.getsignal(signum)
    _signal_self_when_ready(marker, signum)
    code = serve([sys.executable, "-c", CHILD, str(marker)], dict(os.environ))
    assert code == 0
    assert marker.read_text() == str(int(signum))          # the child got the very signal
    assert signal.getsignal(signum) == before               # handlers restored


def test_serve_kills_a_child_that_ignores_the_signal(tmp_path):
    marker = tmp_path / "stubborn"
    _signal_self_when_ready(marker, signal.SIGTERM)
    t0 = time.monotonic()
    assert serve([sys.executable, "-c", STUBBORN, str(marker)], dict(os.environ), grace_s=1.0) == 0
    assert time.monotonic() - t0 < 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.mark.slow
def test_sigterm_to_zolab_ui_stops_streamlit(sqlite_url):
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "zolab", "ui", "--port", str(port), "--db", sqlite_url],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 180
        while not _answers(port):
            assert proc.poll() is None, "zolab ui exited before serving"
            assert time.monotonic() < deadline, "Streamlit never answered"
            time.sleep(0.5)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "Streamlit should run as a child of zolab ui"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        _gone, alive = psutil.wait_procs(children, timeout=5)
        assert not alive, f"left behind: {alive}"
        assert not _answers(port)
    finally:  # a failing run must not leave a Streamlit behind either
        for p in [*children, psutil.Process(proc.pid)] if proc.poll() is None else children:
            if p.is_running():
                p.kill()
