"""A small real store and a real ``cryoflow picker`` server (a subprocess) for the picker tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from cryoflow.io import store as S

SHAPE = (24, 80, 100)  # (Z, Y, X): levels (24, 80, 100), (12, 40, 50), (6, 20, 25)
#: a bright cube of side 4 at level-0 voxels z 10..13, y 30..33, x 60..63
CUBE = (slice(10, 14), slice(30, 34), slice(60, 64))


def make_volume() -> np.ndarray:
    """A seeded noisy volume ``(Z, Y, X)`` with one bright cube at :data:`CUBE`."""
    rng = np.random.default_rng(7)
    vol = rng.normal(0.0, 1.0, SHAPE).astype(np.float32)
    vol[CUBE] = 50.0
    return vol


def make_store(path: Path) -> Path:
    vol = make_volume()
    S.write_volume(path, "cell_a", "tomogram", vol, pixel_size_angstrom=7.5, provenance={})
    S.write_volume(path, "cell_b", "tomogram", vol[:12], pixel_size_angstrom=7.5, provenance={})
    return path


@dataclass(frozen=True)
class Server:
    """A running picker: its base URL (no trailing slash), token, page URL and store."""

    base: str
    token: str
    url: str
    store: Path

    def get(self, path: str, token: str | None = "") -> tuple[int, dict[str, str], bytes]:
        """GET ``path``, with the server's token unless ``token`` is given (None: none)."""
        return self.request("GET", path, None, token)

    def post(self, path: str, body: object, token: str | None = "") -> tuple[int, dict, bytes]:
        return self.request("POST", path, body, token)

    def request(
        self, method: str, path: str, body: object, token: str | None
    ) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": "application/json"}
        tok = self.token if token == "" else token
        if tok is not None:
            headers["X-Cryoflow-Token"] = tok
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def json(self, method: str, path: str, body: object = None) -> dict:
        code, _, raw = self.request(method, path, body, "")
        assert code == 200, (code, raw)
        return json.loads(raw)


def start_server(store: Path, *extra: str) -> tuple[subprocess.Popen[str], Server]:
    """``cryoflow picker STORE`` through the CLI entry point; waits for its printed URL."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CRYOFLOW_WORKERS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cryoflow.cli.main", "picker", str(store), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        lines.append(proc.stdout.readline())

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(timeout=180)
    line = lines[0].strip() if lines else ""
    if not line.startswith("cryoflow picker: http://127.0.0.1:"):
        proc.kill()
        _, err = proc.communicate(timeout=30)
        raise AssertionError(f"no URL printed: {line!r}; stderr: {err}")
    url = line.split(" ", 2)[2]
    base, token = url.split("/?token=")
    return proc, Server(base, token, url, store)


def stop_server(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    store = make_store(tmp_path_factory.mktemp("picker") / "data.zarr")
    proc, srv = start_server(store)
    try:
        yield srv
    finally:
        stop_server(proc)
