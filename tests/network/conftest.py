"""Fixtures for the network tests: the avml binary, raw memory files to acquire, and
real peers on 127.0.0.1 with random free ports — moto's S3 server, the Azure Block
Blob test server (azure_blob_server.py, plain and TLS), a CONNECT proxy — each
bounded in time and stopped at the end.

Run:  python3 -m pytest tests/network                     (from the project's root)
      AVML_BIN=/path/to/avml AVML_MINIMAL_BIN=/path/to/avml-minimal python3 -m pytest tests/network
Needs: moto[server], boto3, pytest; netcat-openbsd (nc), openssl.
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import socket
import tempfile
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SIG = "c2VjcmV0LXNhcy1zaWduYXR1cmU%3D"  # what the SAS tokens below carry; never to be printed
MIB = 1 << 20


def avml_path() -> str:
    return os.environ.get("AVML_BIN", str(ROOT / ".build" / "debug" / "avml"))


@pytest.fixture(scope="session")
def avml() -> str:
    path = avml_path()
    if not os.access(path, os.X_OK):
        pytest.fail(f"avml binary not found at {path}: run `swift build` or set AVML_BIN")
    return path


@pytest.fixture(scope="session")
def avml_minimal() -> str:
    """The acquire-only build (no HTTP or TLS), built beside avml."""
    path = os.environ.get("AVML_MINIMAL_BIN", str(Path(avml_path()).parent / "avml-minimal"))
    if not os.access(path, os.X_OK):
        pytest.fail(f"avml-minimal not found at {path}: run `swift build` or set AVML_MINIMAL_BIN")
    return path


SCRATCH = tempfile.mkdtemp(prefix="avml-network-tests-")


def run(args, env=None, timeout=180, **kwargs) -> subprocess.CompletedProcess:
    """Runs a command with a time limit, capturing text output."""
    full_env = dict(os.environ)
    full_env.pop("HTTPS_PROXY", None)
    full_env.pop("https_proxy", None)
    full_env.pop("HTTP_PROXY", None)
    full_env.pop("http_proxy", None)
    full_env.update(env or {})
    # Streams write their manifest to the working directory unless told otherwise.
    kwargs.setdefault("cwd", SCRATCH)
    return subprocess.run(args, env=full_env, capture_output=True, text=True, timeout=timeout, **kwargs)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen | None = None, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited early with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {seconds} s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def memory_bytes(size: int, seed: int) -> bytes:
    """Memory-like data: random pages, zero pages (left out of images), and repetitive pages."""
    rng = random.Random(seed)
    out = bytearray()
    page = 4096
    while len(out) < size:
        kind = rng.randrange(4)
        if kind == 0:
            out += rng.randbytes(page * 16)
        elif kind == 1:
            out += bytes(page * 16)
        else:
            out += bytes([rng.randrange(1, 256)]) * (page * 8) + bytes(range(256)) * (page * 8 // 256)
    return bytes(out[:size])


@pytest.fixture(scope="session")
def raw_memory(tmp_path_factory) -> Path:
    """A 23 MiB + 5 KiB raw memory file: two 16 MiB pipeline blocks, five 5 MiB Azure blocks."""
    path = tmp_path_factory.mktemp("raw") / "memory.raw"
    path.write_bytes(memory_bytes(23 * MIB + 5 * 1024, seed=0xA5A5))
    return path


@pytest.fixture(scope="session")
def images(avml, raw_memory, tmp_path_factory) -> dict[str, Path]:
    """What `avml acquire --source RAW` writes to a file, LiME and compressed: the reference bytes."""
    folder = tmp_path_factory.mktemp("images")
    result = {}
    for name, flags in (("lime", []), ("compressed", ["--compress"])):
        target = folder / f"reference.{name}"
        done = run([avml, "acquire", "--source", str(raw_memory), *flags, str(target)])
        assert done.returncode == 0, done.stderr
        result[name] = target
    return result


# --- moto's S3 server ----------------------------------------------------------------------


class S3:
    def __init__(self, endpoint: str):
        import boto3
        from botocore.config import Config

        self.endpoint = endpoint
        options = dict(
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        self.client = boto3.client("s3", **options)
        self.client_v4 = boto3.client("s3", config=Config(signature_version="s3v4"), **options)

    def bucket(self, name: str) -> str:
        self.client.create_bucket(Bucket=name)
        return name

    def presigned_put(self, bucket: str, key: str, v4: bool = True) -> str:
        client = self.client_v4 if v4 else self.client
        return client.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=600)

    def get(self, bucket: str, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None


@pytest.fixture(scope="session")
def s3():
    port = free_port()
    log = open(os.devnull, "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log
    )
    try:
        wait_for_port(port, process)
        yield S3(f"http://127.0.0.1:{port}")
    finally:
        stop(process)
        log.close()


# --- the Azure Block Blob test server ------------------------------------------------------


class Azure:
    def __init__(self, base: str, process: subprocess.Popen, context=None):
        self.base = base
        self.process = process
        self.context = context

    def url(self, blob: str, sig: str = SIG) -> str:
        return f"{self.base}/evidence/{blob}?sv=2021-08-06&ss=b&srt=o&sp=rcw&se=2099-01-01T00%3A00%3A00Z&sig={sig}"

    def _call(self, method: str, path: str, body: bytes | None = None):
        request = urllib.request.Request(self.base + path, data=body, method=method)
        with urllib.request.urlopen(request, timeout=30, context=self.context) as answer:
            return answer.status, answer.read()

    def control(self, name: str, payload: dict | None = None) -> dict:
        _, body = self._call("POST" if payload is not None or name != "stats" else "GET", f"/_control/{name}",
                             json.dumps(payload or {}).encode() if name != "stats" else None)
        return json.loads(body or b"{}")

    def reset(self) -> None:
        self.control("reset", {})

    def faults(self, *rules: dict) -> None:
        self.control("faults", {"rules": list(rules)})

    def limits(self, **values: int) -> None:
        self.control("limits", values)

    def stats(self) -> dict:
        return self.control("stats")

    def get(self, blob: str) -> bytes | None:
        try:
            return self._call("GET", self.url(blob)[len(self.base):])[1]
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise


def start_azure(extra: list[str] | None = None, scheme: str = "http", context=None):
    process = subprocess.Popen(
        [sys.executable, str(HERE / "azure_blob_server.py"), "--port", "0", "--sig", SIG.replace("%3D", "="),
         *(extra or [])],
        stdout=subprocess.PIPE,
        text=True,
    )
    ready, _, _ = select.select([process.stdout], [], [], 20)
    if not ready:
        stop(process)
        raise TimeoutError("the Azure test server did not start")
    line = process.stdout.readline()
    assert line.startswith("PORT "), line
    return Azure(f"{scheme}://127.0.0.1:{int(line.split()[1])}", process, context)


@pytest.fixture(scope="session")
def azure_server():
    server = start_azure()
    try:
        yield server
    finally:
        stop(server.process)


@pytest.fixture
def azure(azure_server):
    azure_server.reset()
    return azure_server


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory) -> dict[str, Path]:
    """A test CA and a server certificate for 127.0.0.1 it signed (openssl)."""
    folder = tmp_path_factory.mktemp("tls")
    ca_key, ca_cert = folder / "ca.key", folder / "ca.pem"
    key, csr, cert = folder / "server.key", folder / "server.csr", folder / "server.pem"
    ext = folder / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    steps = [
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca_cert,
         "-days", "2", "-subj", "/CN=avml test CA"],
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
         "-days", "2", "-extfile", ext],
    ]
    for step in steps:
        subprocess.run([str(part) for part in step], check=True, capture_output=True, timeout=60)
    return {"ca": ca_cert, "cert": cert, "key": key}


@pytest.fixture(scope="session")
def tls_azure_server(tls_material):
    import ssl

    context = ssl.create_default_context(cafile=str(tls_material["ca"]))
    server = start_azure(["--cert", str(tls_material["cert"]), "--key", str(tls_material["key"])], "https", context)
    try:
        yield server
    finally:
        stop(server.process)


# --- raw loopback servers: a CONNECT proxy, and test_bounded_responses.py's ----------------


class LoopbackServer:
    """A TCP server on 127.0.0.1 with a random port: `handle` runs in a thread per connection,
    once the request's head has arrived."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.running = True
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        self.listener.settimeout(0.2)
        while self.running:
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self.connection, args=(client,), daemon=True).start()

    def connection(self, client: socket.socket):
        with client:
            client.settimeout(30)
            received = self.read_head(client)
            if received is not None:
                self.handle(client, *received)

    def handle(self, client: socket.socket, head: bytes, rest: bytes):
        """Answers a request whose head (up to the blank line) has arrived; `rest` came after it."""
        raise NotImplementedError

    @staticmethod
    def read_head(client: socket.socket) -> tuple[bytes, bytes] | None:
        """An HTTP head up to its blank line, and what came after it; None if the client went away."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = client.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        return head, rest

    def close(self):
        self.running = False
        self.listener.close()
        self.thread.join(timeout=5)


class ConnectProxy(LoopbackServer):
    """An HTTP CONNECT proxy on 127.0.0.1 that relays to loopback only and counts tunnels."""

    def __init__(self):
        self.tunnels: list[str] = []
        super().__init__()

    def handle(self, client: socket.socket, head: bytes, rest: bytes):
        request_line = head.split(b"\r\n", 1)[0].decode()
        method, target, _ = request_line.split(" ", 2)
        host, _, port = target.rpartition(":")
        if method != "CONNECT" or host not in ("127.0.0.1", "localhost", "[::1]"):
            client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        self.tunnels.append(target)
        with socket.create_connection(("127.0.0.1", int(port)), timeout=30) as upstream:
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            sockets = [client, upstream]
            while True:
                readable, _, _ = select.select(sockets, [], [], 30)
                if not readable:
                    return
                for source in readable:
                    data = source.recv(1 << 16)
                    if not data:
                        return
                    (upstream if source is client else client).sendall(data)


@pytest.fixture
def connect_proxy():
    proxy = ConnectProxy()
    try:
        yield proxy
    finally:
        proxy.close()
