"""Real OpenAI-compatible servers for tests: ``python -m llama_cpp.server`` on loopback.

Each server is its own process with one thread (``--n_threads 1``), so two of them share the
two cores of a small machine; tests that start them must not run beside other llama.cpp work.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from mrtui.backends.base import EndpointEvent, InferenceBackend


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_extra_installed() -> None:
    """Skip the calling test unless llama-cpp-python's server and httpx are installed."""
    pytest.importorskip("httpx", reason="needs httpx: pip install 'mrtui[openai]'")
    for module in ("llama_cpp", "fastapi", "uvicorn", "sse_starlette", "starlette_context"):
        pytest.importorskip(module, reason="needs the server extra: pip install 'mrtui[server]'")


class LlamaServer:
    """``python -m llama_cpp.server`` serving ``model`` on 127.0.0.1 (started on creation)."""

    def __init__(
        self,
        model: Path,
        log_dir: Path,
        *,
        n_ctx: int = 2048,
        api_key: str | None = None,
        ready_timeout_s: float = 90.0,
    ) -> None:
        self.model = model
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_key = api_key
        self.log_path = log_dir / f"llama-server-{self.port}.log"
        args = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            str(n_ctx),
            "--n_threads",
            "1",
            "--n_threads_batch",
            "1",
        ]
        if api_key is not None:
            args += ["--api_key", api_key]
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        try:
            self._wait_ready(ready_timeout_s)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout_s: float) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {self.log_tail()}")
            try:
                if (
                    httpx.get(f"{self.url}/v1/models", headers=headers, timeout=2).status_code
                    == 200
                ):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"llama_cpp.server did not answer in {timeout_s:.0f} s")

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def kill(self) -> None:
        """kill -9: the server dies mid-request, its sockets close without an answer."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> LlamaServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ServedBackend(InferenceBackend):
    """An ``InferenceBackend`` that also stops the servers it runs on when it is closed."""

    model_format = "served"

    def __init__(self, backend: Any, servers: list[LlamaServer]) -> None:
        self.backend = backend
        self.servers = servers

    def info(self) -> Any:
        return self.backend.info()

    def generate(self, requests: Any) -> Any:
        return self.backend.generate(requests)

    def require(self, features: Any) -> None:
        self.backend.require(features)

    def endpoint_events(self) -> list[EndpointEvent]:
        return list(self.backend.endpoint_events())

    def close(self) -> None:
        try:
            self.backend.close()
        finally:
            for s in self.servers:
                s.stop()
