"""The acquire-only build, avml-minimal: the same images as avml, over a file or TCP to
`nc`, and a clear refusal, before any memory is read, of what only the full avml does."""

from __future__ import annotations

import hashlib
import json

import pytest
from conftest import free_port, run, stop
from test_tcp import nc_receive


@pytest.mark.parametrize("kind", ["lime", "compressed"])
def test_acquire_writes_what_the_full_avml_writes(avml_minimal, raw_memory, images, tmp_path, kind):
    target = tmp_path / f"image.{kind}"
    flags = ["--compress"] if kind == "compressed" else []
    done = run([avml_minimal, "acquire", "--source", str(raw_memory), *flags, str(target)])
    assert done.returncode == 0, done.stderr
    assert target.read_bytes() == images[kind].read_bytes()
    record = json.loads((tmp_path / f"image.{kind}.json").read_text())
    assert record["sha256"] == hashlib.sha256(target.read_bytes()).hexdigest()
    verified = run([avml_minimal, "verify", str(target)])
    assert verified.returncode == 0 and "match" in verified.stdout, verified.stderr


def test_stream_tcp_sends_what_acquire_writes(avml_minimal, raw_memory, images, tmp_path):
    port = free_port()
    received = tmp_path / "received"
    receiver = nc_receive(port, received)
    try:
        done = run([avml_minimal, "stream", "tcp", "--source", str(raw_memory), "--manifest", str(tmp_path / "m.json"),
                    f"127.0.0.1:{port}"], timeout=60)
        assert done.returncode == 0, done.stderr
        assert receiver.wait(timeout=30) == 0
    finally:
        stop(receiver)
    assert received.read_bytes() == images["lime"].read_bytes()


@pytest.mark.parametrize("arguments", [
    ["acquire", "--source", "RAW", "--url", "http://127.0.0.1:9/b/k?X-Amz-Signature=feedface00", "IMAGE"],
    ["--source", "RAW", "--sas-url", "http://127.0.0.1:9/c/b?sv=1&sig=feedface00", "--delete", "IMAGE"],  # AVML's form
    ["upload", "put", "IMAGE", "http://127.0.0.1:9/b/k?X-Amz-Signature=feedface00"],
    ["stream", "blob", "--source", "RAW", "http://127.0.0.1:9/c/b?sv=1&sig=feedface00"],
])
def test_uploads_are_refused_at_once_pointing_to_the_full_avml(avml_minimal, raw_memory, tmp_path, arguments):
    image = tmp_path / "image.lime"
    given = {"RAW": str(raw_memory), "IMAGE": str(image)}
    done = run([avml_minimal, *[given.get(argument, argument) for argument in arguments]], timeout=20)
    assert done.returncode != 0
    assert "avml-minimal" in done.stderr and "full avml" in done.stderr, done.stderr
    assert "feedface00" not in done.stderr
    assert not image.exists() and not (tmp_path / "image.lime.json").exists()
