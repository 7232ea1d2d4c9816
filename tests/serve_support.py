"""Start ``specs serve`` as a real process on 127.0.0.1 for the server tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
TOY_CONFIG = ROOT / "examples" / "configs" / "toy.yaml"
_LISTENING = re.compile(r"specs serve: listening on http://([\d.]+):(\d+)")


@dataclass
class SpecsServer:
    """A running ``specs serve`` process."""

    url: str
    process: subprocess.Popen[bytes]
    lines: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (``.../v1``)."""
        return f"{self.url}/v1"

    def log(self) -> str:
        """Everything the server wrote so far."""
        return "".join(self.lines)

    def metric(self, name: str, key: str | None = None) -> float:
        """The value of one metric line (``name`` exactly, labels included), 0 when absent."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        text = httpx.get(f"{self.url}/metrics", headers=headers, timeout=10).text
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return 0.0

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, wait; SIGKILL after ``timeout`` s. Returns the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        return self.process.returncode


def start_specs_serve(
    *args: str, config: Path = TOY_CONFIG, env: dict[str, str] | None = None, timeout: float = 60
) -> SpecsServer:
    """Start ``specs serve`` on a free port and wait until ``/health`` answers."""
    specs = Path(sys.executable).parent / "specs"
    process = subprocess.Popen(
        [str(specs), "serve", "-c", str(config), "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    server = SpecsServer(url="", process=process)
    found = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode(errors="replace")
            server.lines.append(line)
            match = _LISTENING.search(line)
            if match and not found.is_set():
                server.url = f"http://{match.group(1)}:{match.group(2)}"
                found.set()

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not found.wait(0.1):
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"specs serve did not start: {server.log()}")
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{server.url}/health", timeout=5).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"specs serve did not answer /health: {server.log()}")
