"""Fixtures shared by every test package."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

# Without CUDA, Triton kernels can only run in Triton's interpreter (tests/ops/test_triton_scan.py). It is
# chosen when `triton.jit` defines a kernel, including triton's own library at `import triton`, which timm
# (through torch._dynamo) triggers early: so it is set here, before any test module is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The suite's longest files (`schedule_first`), then files with `slow` tests, then the rest, each file's
    tests in their own order: `make test` hands whole files to its xdist workers in collection order, and a long
    file handed out last would run alone while the other worker idles."""
    first = {item.path for item in items if item.get_closest_marker("schedule_first")}
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: (item.path not in first, item.path not in slow))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_reference() -> Path:
    """`../shared/reference`, or skip: the project must pass its tests without it."""
    path = SHARED_DIR / "reference"
    if not path.is_dir():
        pytest.skip("../shared/reference is absent")
    return path


@pytest.fixture(scope="session")
def shared_headct() -> Path:
    """The real HeadCT raw download in `../shared/datasets/headct`, or skip."""
    path = SHARED_DIR / "datasets" / "headct"
    if not (path / "labels.csv").is_file():
        pytest.skip("../shared/datasets/headct is absent")
    return path


class FileServer(ThreadingHTTPServer):
    """Serves `files` (URL path -> bytes) on 127.0.0.1 with ``Range`` support, logging (path, Range header).

    A path in `cut_next` is cut once: the full length is promised, half of the rest is sent, then the
    connection is closed (a dropped download). ``/error`` always answers HTTP 500.
    """

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _FileHandler)
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.cut_next: set[str] = set()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class _FileHandler(BaseHTTPRequestHandler):
    server: FileServer

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.requests.append((self.path, self.headers.get("Range")))
        if self.path == "/error":
            self.send_error(500)
            return
        data = self.server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if self.path in self.server.cut_next:
            self.server.cut_next.discard(self.path)
            self.wfile.write(data[start:start + (len(data) - start) // 2])
            self.wfile.flush()
            self.connection.close()
            return
        self.wfile.write(data[start:])


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    """A local HTTP server for download tests: tests never touch the network."""
    server = FileServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
