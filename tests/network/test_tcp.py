"""`avml stream tcp` against a plain receiver: Debian's netcat-openbsd (`nc -l`)."""

from __future__ import annotations

import hashlib
import json
import socket
import struct
import subprocess
import threading
import time

import pytest
from conftest import MIB, free_port, memory_bytes, run, stop, wait_for_port


def nc_receive(port: int, target) -> subprocess.Popen:
    """`nc -l 127.0.0.1 PORT > target`, bounded to 60 s; -d: never read standard input."""
    out = open(target, "wb")
    process = subprocess.Popen(["timeout", "60", "nc", "-d", "-l", "127.0.0.1", str(port)], stdout=out)
    out.close()
    wait_listening(port, process)
    return process


def wait_listening(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        listening = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True).stdout
        if listening.strip():
            return
        if process.poll() is not None:
            raise RuntimeError("nc exited early")
        time.sleep(0.05)
    raise TimeoutError("nc is not listening")


@pytest.mark.parametrize("kind", ["lime", "compressed"])
def test_nc_receives_exactly_what_acquire_writes(avml, raw_memory, images, tmp_path, kind):
    port = free_port()
    received = tmp_path / "received"
    receiver = nc_receive(port, received)
    flags = ["--compress"] if kind == "compressed" else []
    manifest = tmp_path / "stream.json"
    try:
        done = run([avml, "stream", "tcp", *flags, "--source", str(raw_memory), "--manifest", str(manifest),
                    f"127.0.0.1:{port}"], timeout=60)
        assert done.returncode == 0, done.stderr
        assert receiver.wait(timeout=30) == 0
    finally:
        stop(receiver)
    assert received.read_bytes() == images[kind].read_bytes()
    assert f"streamed {received.stat().st_size} bytes" in done.stderr
    digest = hashlib.sha256(received.read_bytes()).hexdigest()
    assert f"sha256 {digest}" in done.stderr
    record = json.loads(manifest.read_text())
    assert record["sha256"] == digest and record["size"] == received.stat().st_size
    assert record["image"] == f"127.0.0.1:{port}" and record["exit_status"] == 0
    assert record["format"] == ("lime_compressed" if kind == "compressed" else "lime")


def test_a_dropped_connection_aborts_with_an_error(avml, tmp_path):
    # 96 MiB of random memory: far more than the socket buffers, so the drop is seen mid-stream.
    raw = tmp_path / "big.raw"
    raw.write_bytes(memory_bytes(96 * MIB, seed=7).replace(bytes(4096), b"\x01" * 4096))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(30)
    port = listener.getsockname()[1]
    got = []

    def receive_then_reset():
        connection, _ = listener.accept()
        with connection:
            total = 0
            while total < MIB:
                total += len(connection.recv(65536))
            got.append(total)
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST

    thread = threading.Thread(target=receive_then_reset, daemon=True)
    thread.start()
    try:
        done = run([avml, "stream", "tcp", "--source", str(raw), f"127.0.0.1:{port}"], timeout=60)
    finally:
        thread.join(timeout=30)
        listener.close()
    assert got and got[0] >= MIB
    assert done.returncode != 0
    assert "the connection to 127.0.0.1" in done.stderr and "incomplete" in done.stderr


def test_nothing_listening_fails_at_once(avml, raw_memory):
    done = run([avml, "stream", "tcp", "--source", str(raw_memory), f"127.0.0.1:{free_port()}"], timeout=30)
    assert done.returncode == 1
    assert "cannot connect to 127.0.0.1" in done.stderr and "Connection refused" in done.stderr


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.1:0", "host:port", "::1:80"])
def test_bad_addresses_are_refused(avml, raw_memory, address):
    done = run([avml, "stream", "tcp", "--source", str(raw_memory), address], timeout=30)
    assert done.returncode == 1
    assert "invalid destination" in done.stderr
