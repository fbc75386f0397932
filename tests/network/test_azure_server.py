"""The Azure test server keeps the Block Blob rules the uploads rely on (Microsoft's REST docs)."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request

import pytest


def call(azure, method, blob, query="", body=b"", headers=None):
    url = azure.url(blob) + query
    request = urllib.request.Request(url, data=body if method == "PUT" else None, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def block_id(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def put_block(azure, blob, name, body=b"x"):
    return call(azure, "PUT", blob, f"&comp=block&blockid={urllib.request.quote(block_id(name), safe='')}", body)


def put_list(azure, blob, names, tag="Latest"):
    xml = "<?xml version='1.0' encoding='utf-8'?><BlockList>"
    xml += "".join(f"<{tag}>{block_id(name)}</{tag}>" for name in names) + "</BlockList>"
    return call(azure, "PUT", blob, "&comp=blocklist", xml.encode())


def test_blocks_commit_in_list_order(azure):
    assert put_block(azure, "o", "b2", b"world")[0] == 201
    assert put_block(azure, "o", "b1", b"hello ")[0] == 201
    assert azure.get("o") is None  # nothing before Put Block List
    assert put_list(azure, "o", ["b1", "b2"])[0] == 201
    assert azure.get("o") == b"hello world"


def test_block_ids_of_one_blob_must_have_equal_length(azure):
    assert put_block(azure, "e", "aa")[0] == 201
    status, body = put_block(azure, "e", "bbbb")
    assert status == 400 and b"InvalidBlobOrBlock" in body


def test_unknown_block_in_the_list_is_invalid(azure):
    assert put_block(azure, "u", "aa")[0] == 201
    status, body = put_list(azure, "u", ["aa", "zz"])
    assert status == 400 and b"InvalidBlockList" in body
    assert azure.get("u") is None


def test_block_size_limit(azure):
    azure.limits(max_block_bytes=4)  # stands for 4000 MiB
    status, body = put_block(azure, "s", "aa", b"12345")
    assert status == 413 and b"RequestBodyTooLarge" in body
    assert put_block(azure, "s", "aa", b"1234")[0] == 201


def test_committed_block_count_limit(azure):
    azure.limits(max_committed_blocks=2)  # stands for 50,000
    for name in ("a1", "a2", "a3"):
        assert put_block(azure, "c", name)[0] == 201
    status, body = put_list(azure, "c", ["a1", "a2", "a3"])
    assert status == 409 and b"BlockCountExceedsLimit" in body
    assert put_list(azure, "c", ["a1", "a2"])[0] == 201


def test_block_id_longer_than_64_bytes_is_refused(azure):
    status, _ = put_block(azure, "l", "x" * 65)
    assert status == 400


def test_put_blob_needs_the_block_blob_header(azure):
    assert call(azure, "PUT", "h", body=b"data")[0] == 400
    assert call(azure, "PUT", "h", body=b"data", headers={"x-ms-blob-type": "BlockBlob"})[0] == 201
    assert azure.get("h") == b"data"


def test_committed_blocks_can_be_kept_by_a_later_list(azure):
    put_block(azure, "k", "p1", b"one ")
    put_block(azure, "k", "p2", b"two")
    put_list(azure, "k", ["p1", "p2"])
    put_block(azure, "k", "p3", b" three")
    assert put_list(azure, "k", ["p1", "p2"], tag="Committed")[0] == 201
    assert azure.get("k") == b"one two"


def test_wrong_signature_is_refused(azure):
    request = urllib.request.Request(azure.url("z", sig="nope"), method="GET")
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=30)
    assert error.value.code == 403


def test_get_block_list(azure):
    put_block(azure, "g", "q1", b"abc")
    status, body = call(azure, "GET", "g", "&comp=blocklist&blocklisttype=all")
    assert status == 200 and b"<UncommittedBlocks><Block><Name>" in body and b"<Size>3</Size>" in body
