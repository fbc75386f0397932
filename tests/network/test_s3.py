"""HTTP PUT against a real S3 emulator (moto's server) with presigned URLs from boto3."""

from __future__ import annotations

import json
import time
import urllib.parse

import pytest
from conftest import MIB, run


@pytest.mark.parametrize("v4", [True, False], ids=["sigv4", "sigv2"])
def test_upload_put_stores_the_file_exactly(avml, s3, images, v4):
    bucket = s3.bucket(f"put-{int(v4)}")
    url = s3.presigned_put(bucket, "host1.lime", v4=v4)
    done = run([avml, "upload", "put", str(images["lime"]), url])
    assert done.returncode == 0, done.stderr
    assert s3.get(bucket, "host1.lime") == images["lime"].read_bytes()
    assert_no_secrets(done.stderr, url)


def test_acquire_url_uploads_and_keeps_the_file_without_delete(avml, s3, raw_memory, images, tmp_path):
    bucket = s3.bucket("acquire-keep")
    url = s3.presigned_put(bucket, "image.lime")
    target = tmp_path / "image.lime"
    done = run([avml, "acquire", "--source", str(raw_memory), "--url", url, str(target)])
    assert done.returncode == 0, done.stderr
    assert target.read_bytes() == images["lime"].read_bytes()
    assert s3.get(bucket, "image.lime") == images["lime"].read_bytes()


def test_acquire_url_delete_removes_the_file_after_success(avml, s3, raw_memory, images, tmp_path):
    bucket = s3.bucket("acquire-delete")
    url = s3.presigned_put(bucket, "image.avml")
    target = tmp_path / "image.avml"
    done = run([avml, "acquire", "--compress", "--source", str(raw_memory), "--url", url, "--delete", str(target)])
    assert done.returncode == 0, done.stderr
    assert not target.exists()
    assert s3.get(bucket, "image.avml") == images["compressed"].read_bytes()
    assert "deleted" in done.stderr


def test_delete_keeps_the_file_when_the_bucket_is_missing(avml, s3, raw_memory, images, tmp_path):
    # A presigned URL for a bucket that does not exist: S3 answers 404 NoSuchBucket, not retried.
    url = s3.presigned_put("no-such-bucket", "image.lime")
    target = tmp_path / "image.lime"
    started = time.monotonic()
    done = run([avml, "acquire", "--source", str(raw_memory), "--url", url, "--delete", str(target)])
    assert done.returncode == 1
    assert time.monotonic() - started < 30
    assert target.read_bytes() == images["lime"].read_bytes()
    assert "HTTP 404" in done.stderr and "NoSuchBucket" in done.stderr
    assert "was kept" in done.stderr
    assert "warning:" not in done.stderr  # 4xx: no retry
    assert_no_secrets(done.stderr, url)


def test_delete_keeps_the_file_when_nothing_listens(avml, raw_memory, images, tmp_path):
    # A dead endpoint: connection refused on every one of the 8 attempts (short backoff for the test).
    from conftest import free_port

    url = f"http://127.0.0.1:{free_port()}/bucket/image.lime?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=deadbeef00"
    target = tmp_path / "image.lime"
    done = run(
        [avml, "acquire", "--source", str(raw_memory), "--url", url, "--delete", str(target)],
        env={"AVML_RETRY_BASE_MS": "20"},
        timeout=120,
    )
    assert done.returncode == 1
    assert target.read_bytes() == images["lime"].read_bytes()
    assert done.stderr.count("retrying in") == 7
    assert "gave up after 8 attempts" in done.stderr and "Connection refused" in done.stderr
    assert_no_secrets(done.stderr, url)


def test_more_than_5_gib_to_s3_fails_before_sending(avml, s3, tmp_path):
    bucket = s3.bucket("too-big")
    url = s3.presigned_put(bucket, "big.lime")
    big = tmp_path / "big.lime"
    with open(big, "wb") as sparse:
        sparse.truncate(5 * 1024 * MIB + 1)  # sparse: one byte over S3's single-PUT limit
    started = time.monotonic()
    done = run([avml, "upload", "put", str(big), url])
    assert done.returncode == 1
    assert time.monotonic() - started < 10
    assert "5 GiB" in done.stderr and "nothing was sent" in done.stderr and "--compress" in done.stderr
    assert s3.get(bucket, "big.lime") is None


def test_acquire_url_refuses_before_reading_memory_when_lime_cannot_fit(avml, s3, tmp_path):
    # A 6 GiB raw memory file (sparse): its LiME image cannot go in one S3 PUT, which
    # is known from the plan, so nothing is read, nothing written, nothing sent.
    bucket = s3.bucket("refuse-early")
    url = s3.presigned_put(bucket, "host.lime")
    memory = tmp_path / "memory.raw"
    with open(memory, "wb") as sparse:
        sparse.truncate(6 * 1024 * MIB)
    target = tmp_path / "host.lime"
    started = time.monotonic()
    done = run([avml, "acquire", "--no-symbols", "--source", str(memory), "--url", url, str(target)])
    assert done.returncode == 1
    assert time.monotonic() - started < 10
    assert "5 GiB" in done.stderr and "--compress" in done.stderr, done.stderr
    assert not target.exists()
    manifest = json.loads((tmp_path / "host.lime.json").read_text())
    assert manifest["exit_status"] == 1 and manifest["ranges"]["captured"] == []
    assert s3.get(bucket, "host.lime") is None
    assert_no_secrets(done.stderr, url)


def test_exactly_5_gib_is_not_refused_by_the_check(avml, tmp_path):
    # The check is "more than 5 GiB": a file of exactly 5 GiB is sent (here to a dead port, so it fails later).
    from conftest import free_port

    exact = tmp_path / "exact.lime"
    with open(exact, "wb") as sparse:
        sparse.truncate(5 * 1024 * MIB)
    url = f"http://127.0.0.1:{free_port()}/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=ab"
    done = run([avml, "upload", "put", str(exact), url], env={"AVML_RETRY_BASE_MS": "1"})
    assert done.returncode == 1
    assert "nothing was sent" not in done.stderr and "Connection refused" in done.stderr


def assert_no_secrets(text: str, url: str) -> None:
    query = urllib.parse.urlsplit(url).query
    for name, value in urllib.parse.parse_qsl(query):
        if name.lower() in ("signature", "x-amz-signature", "x-amz-credential", "awsaccesskeyid"):
            assert value not in text, f"{name} leaked into: {text}"
            assert urllib.parse.quote(value, safe="") not in text
    assert query not in text
