"""Azure Block Blob uploads and streams against azure_blob_server.py, with injected faults."""

from __future__ import annotations

import base64
import time

import pytest
from conftest import MIB, SIG, memory_bytes, run

SIG_PLAIN = SIG.replace("%3D", "=")


def committed(azure, blob):
    return azure.stats()["blobs"].get(f"/evidence/{blob}")


def ops(azure, name):
    return [request for request in azure.stats()["requests"] if request["op"] == name]


def assert_no_secrets(text):
    assert SIG not in text and SIG_PLAIN not in text and "c2VjcmV0" not in text


def test_upload_blob_commits_exactly_the_file(avml, azure, images):
    done = run([avml, "upload", "blob", str(images["lime"]), azure.url("a.lime")])
    assert done.returncode == 0, done.stderr
    assert azure.get("a.lime") == images["lime"].read_bytes()
    blob = committed(azure, "a.lime")
    size = images["lime"].stat().st_size
    assert len(blob["blocks"]) == -(-size // (5 * MIB))  # 5 MiB blocks: Azure's floor
    assert len({len(name) for name, _ in blob["blocks"]}) == 1  # equal-length block IDs
    assert [base64.b64decode(name).decode() for name, _ in blob["blocks"]] == [
        f"avml{index:08d}" for index in range(len(blob["blocks"]))
    ]
    assert ops(azure, "get_block_list"), "the commit is checked with Get Block List"
    assert_no_secrets(done.stderr)


def test_upload_blob_alias_and_block_size_floor(avml, azure, images):
    done = run([avml, "upload", "upload-blob", "--sas-block-size", "8", str(images["lime"]), azure.url("b.lime")])
    assert done.returncode == 0, done.stderr
    assert {size for _, size in committed(azure, "b.lime")["blocks"][:-1]} == {8 * MIB}
    assert azure.get("b.lime") == images["lime"].read_bytes()


def test_retried_upload_still_commits_exactly_the_file(avml, azure, images):
    # 503 with Retry-After twice on block 1, connections dropped mid-body twice on block 3,
    # a 500 on block 4, a 429, and a 503 on Put Block List: every request is retried.
    azure.faults(
        {"op": "put_block", "block": 1, "action": "status", "status": 503, "retry_after": "1", "times": 2},
        {"op": "put_block", "block": 3, "action": "drop", "times": 2},
        {"op": "put_block", "block": 4, "action": "status", "status": 500, "times": 1},
        {"op": "put_block", "block": 0, "action": "status", "status": 429, "retry_after": "0", "times": 1},
        {"op": "put_block_list", "action": "status", "status": 503, "retry_after": "1", "times": 1},
    )
    started = time.monotonic()
    done = run([avml, "upload", "blob", "--sas-block-concurrency", "2", str(images["lime"]), azure.url("r.lime")])
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert azure.get("r.lime") == images["lime"].read_bytes()
    assert len(azure.stats()["faults"]) == 7
    assert done.stderr.count("retrying in") == 7
    assert "retrying in 1.0 s" in done.stderr  # Retry-After honoured
    assert elapsed >= 2.0  # block 1 waited 1 s twice; the commit waited 1 s
    assert len(ops(azure, "put_block_list")) == 2
    assert_no_secrets(done.stderr)


def test_block_failing_every_attempt_commits_nothing(avml, azure, images):
    azure.faults({"op": "put_block", "block": 2, "action": "status", "status": 503, "retry_after": "0", "times": 100})
    done = run([avml, "upload", "blob", str(images["lime"]), azure.url("f.lime")])
    assert done.returncode == 1
    assert "block 3 of 5" in done.stderr and "gave up after 8 attempts" in done.stderr and "ServerBusy" in done.stderr
    assert not ops(azure, "put_block_list")
    assert azure.get("f.lime") is None
    assert len([r for r in ops(azure, "put_block") if r["block"] == 2]) == 8


def test_wrong_sas_fails_at_once_without_printing_the_token(avml, azure, images):
    wrong = "d3Jvbmctc2lnbmF0dXJlLXZhbHVl"
    done = run([avml, "upload", "blob", str(images["lime"]), azure.url("w.lime", sig=wrong)])
    assert done.returncode == 1
    assert "HTTP 403" in done.stderr and "AuthenticationFailed" in done.stderr
    assert wrong not in done.stderr and "?[redacted]" in done.stderr  # the server echoed the URL
    assert "retrying" not in done.stderr


def test_upload_put_to_a_sas_url_is_a_put_blob(avml, azure, images):
    done = run([avml, "upload", "put", str(images["compressed"]), azure.url("p.avml")])
    assert done.returncode == 0, done.stderr
    assert azure.get("p.avml") == images["compressed"].read_bytes()
    assert [r["op"] for r in azure.stats()["requests"]][:1] == ["put_blob"]  # x-ms-blob-type: BlockBlob


@pytest.mark.parametrize("kind", ["lime", "compressed"])
def test_stream_blob_equals_what_acquire_writes(avml, azure, raw_memory, images, kind):
    azure.faults(
        {"op": "put_block", "block": 0, "action": "drop", "times": 1},
        {"op": "put_block", "block": 1, "action": "status", "status": 503, "retry_after": "1", "times": 1},
    )
    flags = ["--compress"] if kind == "compressed" else []
    done = run(
        [avml, "stream", "blob", *flags, "--source", str(raw_memory), "--sas-block-concurrency", "3",
         azure.url(f"s.{kind}")]
    )
    assert done.returncode == 0, done.stderr
    assert azure.get(f"s.{kind}") == images[kind].read_bytes()
    stats = azure.stats()
    assert 1 <= stats["max_inflight_put_block"] <= 3
    assert len(stats["faults"]) == 2
    assert_no_secrets(done.stderr)


def test_failed_stream_commits_nothing_and_exits_non_zero(avml, azure, raw_memory):
    azure.faults({"op": "put_block", "block": 1, "action": "status", "status": 400, "times": 100})
    done = run([avml, "stream", "blob", "--source", str(raw_memory), azure.url("x.lime")])
    assert done.returncode != 0
    assert "HTTP 400" in done.stderr and "block 2" in done.stderr
    assert not ops(azure, "put_block_list")
    assert azure.get("x.lime") is None


def test_acquire_sas_url_delete(avml, azure, raw_memory, images, tmp_path):
    target = tmp_path / "image.lime"
    done = run([avml, "acquire", "--source", str(raw_memory), "--sas-url", azure.url("d.lime"), "--delete", str(target)])
    assert done.returncode == 0, done.stderr
    assert not target.exists()
    assert azure.get("d.lime") == images["lime"].read_bytes()


def test_acquire_sas_url_delete_keeps_the_file_when_the_commit_fails(avml, azure, raw_memory, images, tmp_path):
    azure.faults({"op": "put_block_list", "action": "status", "status": 409, "times": 100})
    target = tmp_path / "image.lime"
    done = run([avml, "acquire", "--source", str(raw_memory), "--sas-url", azure.url("k.lime"), "--delete", str(target)])
    assert done.returncode == 1
    assert target.read_bytes() == images["lime"].read_bytes()
    assert "Put Block List" in done.stderr and "HTTP 409" in done.stderr
    assert azure.get("k.lime") is None


def test_stream_memory_stays_bounded(avml, azure, tmp_path):
    """A 384 MiB image streamed in 5 MiB blocks, 4 at a time: peak memory stays far below the image."""
    raw = tmp_path / "large.raw"
    with open(raw, "wb") as out:
        for index in range(48):
            out.write(memory_bytes(8 * MIB, seed=index).replace(bytes(4096), b"\x02" * 4096))
    done = run(
        ["/usr/bin/time", "-f", "maxrss_kib=%M", avml, "stream", "blob", "--source", str(raw),
         "--sas-block-concurrency", "4", "--threads", "2", azure.url("big.lime")],
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    peak_mib = int(done.stderr.rsplit("maxrss_kib=", 1)[1].split()[0]) // 1024
    print(f"stream blob of 384 MiB, 5 MiB blocks x 4: peak RSS {peak_mib} MiB")
    assert peak_mib < 250
    assert committed(azure, "big.lime")["size"] == 384 * MIB + 24 * 32  # a 32-byte LiME header per 16 MiB


def test_https_with_ssl_cert_file_through_https_proxy(avml, tls_azure_server, tls_material, connect_proxy, images):
    azure = tls_azure_server
    azure.reset()
    done = run(
        [avml, "upload", "blob", str(images["lime"]), azure.url("t.lime")],
        env={"SSL_CERT_FILE": str(tls_material["ca"]), "HTTPS_PROXY": f"http://127.0.0.1:{connect_proxy.port}"},
    )
    assert done.returncode == 0, done.stderr
    assert azure.get("t.lime") == images["lime"].read_bytes()
    assert connect_proxy.tunnels and set(connect_proxy.tunnels) == {azure.base.split("//")[1]}


def test_no_proxy_bypasses_the_proxy(avml, tls_azure_server, tls_material, connect_proxy, images):
    azure = tls_azure_server
    azure.reset()
    done = run(
        [avml, "upload", "put", str(images["lime"]), azure.url("n.lime")],
        env={
            "SSL_CERT_FILE": str(tls_material["ca"]),
            "HTTPS_PROXY": f"http://127.0.0.1:{connect_proxy.port}",
            "NO_PROXY": "localhost,127.0.0.1",
        },
    )
    assert done.returncode == 0, done.stderr
    assert connect_proxy.tunnels == []


def test_untrusted_certificate_fails_without_retrying(avml, tls_azure_server, images):
    # The system's CA bundle does not know the test CA.
    done = run([avml, "upload", "put", str(images["lime"]), tls_azure_server.url("u.lime")], timeout=60)
    assert done.returncode == 1
    assert "TLS handshake failed" in done.stderr or "certificate" in done.stderr.lower()
    assert "retrying" not in done.stderr


def test_progress_only_on_a_terminal(avml, azure, images):
    azure.faults({"op": "put_block", "action": "delay", "seconds": 0.3, "times": 100})
    url = azure.url("tty.lime")
    piped = run([avml, "upload", "blob", "--sas-block-concurrency", "1", str(images["lime"]), url])
    assert piped.returncode == 0 and "ETA" not in piped.stderr and "\r" not in piped.stderr
    # `script` gives avml a pseudo-terminal for standard error.
    command = f"{avml} upload blob --sas-block-concurrency 1 {images['lime']} '{url}'"
    on_tty = run(["script", "-qec", command, "/dev/null"])
    assert on_tty.returncode == 0, on_tty.stdout
    assert "upload " in on_tty.stdout and "%" in on_tty.stdout and "MiB/s" in on_tty.stdout and "ETA" in on_tty.stdout
    assert_no_secrets(on_tty.stdout)
