#!/usr/bin/env python3
"""A small Azure Blob Storage Block Blob server for tests, from Microsoft's REST docs.

Implements, for SAS-authenticated requests on /CONTAINER/BLOB:

  Put Blob        PUT  ?<sas>                     x-ms-blob-type: BlockBlob, at most 5000 MiB
  Put Block       PUT  ?<sas>&comp=block&blockid= base64 id (<= 64 bytes decoded, one length
                                                  per blob), body <= 4000 MiB, <= 100,000 uncommitted
  Put Block List  PUT  ?<sas>&comp=blocklist      <BlockList><Latest|Committed|Uncommitted>id…,
                                                  <= 50,000 blocks; unknown id -> 400 InvalidBlockList
  Get Blob        GET  ?<sas>
  Get Block List  GET  ?<sas>&comp=blocklist[&blocklisttype=committed|uncommitted|all]

The SAS check is only "sig must equal --sig, sv must be present"; a wrong one answers
403 AuthenticationFailed and, like Azure, echoes the request (so clients must redact).
Blocks are kept in a temporary folder, not in memory.

Test control (JSON, no SAS needed):
  POST /_control/faults   {"rules": [{"op": "put_block", "action": "status", "status": 503,
                           "retry_after": "1", "times": 2, "block": 3}, {"action": "drop", ...},
                           {"action": "delay", "seconds": 0.5, ...}]}
                           op: put_blob, put_block, put_block_list, get_blob, get_block_list, any;
                           block: the block index (decimal digits of the ID), optional.
  POST /_control/limits   {"max_block_bytes": N, "max_committed_blocks": N, ...}
  POST /_control/reset    forget blobs, blocks, faults, limits and statistics
  GET  /_control/stats    requests seen, faults injected, the most Put Blocks in flight at once

Run: azure_blob_server.py --port 0 --sig SECRET [--cert C --key K]; prints "PORT n".
"""

import argparse
import base64
import json
import os
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MIB = 1 << 20
DEFAULT_LIMITS = {
    "max_block_bytes": 4000 * MIB,  # Put Block, version 2019-12-12 and later
    "max_put_blob_bytes": 5000 * MIB,  # Put Blob, version 2019-12-12 and later
    "max_committed_blocks": 50_000,
    "max_uncommitted_blocks": 100_000,
    "max_block_id_bytes": 64,
}


class Store:
    """Blobs and blocks on disk, faults and statistics, behind one lock."""

    def __init__(self, root):
        self.root = root
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with getattr(self, "lock", threading.Lock()):
            if hasattr(self, "folder"):
                shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = tempfile.mkdtemp(dir=self.root)
            self.counter = 0
            self.blobs = {}  # path -> {"file": path, "size": n, "blocks": [(id, size)]}
            self.uncommitted = {}  # path -> {id: (file, size)}
            self.rules = []
            self.limits = dict(DEFAULT_LIMITS)
            self.requests = []
            self.faults = []
            self.inflight = 0
            self.max_inflight = 0

    def new_file(self):
        with self.lock:
            self.counter += 1
            return os.path.join(self.folder, f"data-{self.counter}")

    def take_fault(self, op, block):
        with self.lock:
            for rule in self.rules:
                if rule.get("times", 1) <= 0:
                    continue
                if rule.get("op", "any") not in ("any", op):
                    continue
                if "block" in rule and rule["block"] != block:
                    continue
                rule["times"] = rule.get("times", 1) - 1
                self.faults.append({"op": op, "block": block, "action": rule.get("action", "status")})
                return dict(rule)
        return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Windows-Azure-Blob/1.0 (avml test)"
    store = None
    sig = None

    def log_message(self, format, *args):  # quiet
        pass

    # --- plumbing -------------------------------------------------------------------------

    def send_xml(self, status, body, headers=None):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-ms-request-id", "test")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_error_xml(self, status, code, message, headers=None):
        headers = dict(headers or {})
        headers["x-ms-error-code"] = code
        body = (
            '<?xml version="1.0" encoding="utf-8"?><Error>'
            f"<Code>{code}</Code><Message>{escape(message)}\nRequestId:test\nTime:{time.time()}</Message></Error>"
        )
        self.send_xml(status, body, headers)

    def send_empty(self, status, headers=None):
        self.send_response(status)
        self.send_header("Content-Length", "0")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()

    def read_body_to(self, path, length):
        with open(path, "wb") as out:
            remaining = length
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    raise ConnectionError("client closed the connection mid-body")
                out.write(chunk)
                remaining -= len(chunk)

    def drain(self, length):
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                break
            remaining -= len(chunk)

    def drop_connection(self, length):
        # Read part of the body, then cut the connection without an answer (RST).
        self.rfile.read(min(length, 65536))
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.connection.close()

    # --- routing --------------------------------------------------------------------------

    def do_GET(self):
        self.route()

    def do_PUT(self):
        self.route()

    def do_POST(self):
        self.route()

    def route(self):
        parsed = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length", "0") or 0)
        if parsed.path.startswith("/_control/"):
            return self.control(parsed.path, length)
        comp = query.get("comp", [""])[0]
        op = {
            ("PUT", ""): "put_blob",
            ("PUT", "block"): "put_block",
            ("PUT", "blocklist"): "put_block_list",
            ("GET", ""): "get_blob",
            ("GET", "blocklist"): "get_block_list",
        }.get((self.command, comp))
        block = None
        if op == "put_block":
            block = block_index(query.get("blockid", [""])[0])
        record = {"op": op, "block": block, "bytes": length, "status": None}
        with self.store.lock:
            self.store.requests.append(record)
        if op is None:
            self.drain(length)
            record["status"] = 400
            return self.send_error_xml(400, "UnsupportedQueryParameter", f"{self.command} comp={comp}")
        if query.get("sig", [None])[0] != self.sig or "sv" not in query:
            self.drain(length)
            record["status"] = 403
            return self.send_error_xml(
                403,
                "AuthenticationFailed",
                "Server failed to authenticate the request. Make sure the value of Authorization header is formed "
                f"correctly including the signature. Request: {self.command} {self.path}",
            )
        fault = self.store.take_fault(op, block)
        if fault:
            action = fault.get("action", "status")
            if action == "drop":
                record["status"] = "dropped"
                return self.drop_connection(length)
            if action == "delay":
                time.sleep(float(fault.get("seconds", 1)))
            else:
                self.drain(length)
                status = int(fault.get("status", 503))
                record["status"] = status
                headers = {"Retry-After": str(fault["retry_after"])} if "retry_after" in fault else {}
                code = "ServerBusy" if status == 503 else "InternalError" if status >= 500 else "InvalidInput"
                return self.send_error_xml(status, code, "injected fault", headers)
        blob = parsed.path
        if op == "put_block":
            with self.store.lock:
                self.store.inflight += 1
                self.store.max_inflight = max(self.store.max_inflight, self.store.inflight)
            try:
                status = self.put_block(blob, query, length)
            finally:
                with self.store.lock:
                    self.store.inflight -= 1
        else:
            status = getattr(self, op)(blob, query, length)
        record["status"] = status

    # --- operations ----------------------------------------------------------------------

    def require_length(self):
        if "Content-Length" not in self.headers:
            self.send_error_xml(411, "MissingContentLengthHeader", "Content-Length is required")
            return False
        return True

    def put_blob(self, blob, query, length):
        if not self.require_length():
            return 411
        if self.headers.get("x-ms-blob-type") != "BlockBlob":
            self.drain(length)
            self.send_error_xml(400, "MissingRequiredHeader", "x-ms-blob-type must be BlockBlob")
            return 400
        limits = self.store.limits
        if length > limits["max_put_blob_bytes"]:
            self.drain(length)
            self.send_error_xml(413, "RequestBodyTooLarge", "The request body is too large")
            return 413
        path = self.store.new_file()
        self.read_body_to(path, length)
        with self.store.lock:
            self.store.blobs[blob] = {"file": path, "size": length, "blocks": []}
            self.store.uncommitted.pop(blob, None)
        self.send_empty(201, {"ETag": '"0x1"'})
        return 201

    def put_block(self, blob, query, length):
        if not self.require_length():
            return 411
        limits = self.store.limits
        block_id = query.get("blockid", [""])[0]
        try:
            raw = base64.b64decode(block_id, validate=True)
        except Exception:
            raw = None
        if not block_id or raw is None or len(raw) > limits["max_block_id_bytes"]:
            self.drain(length)
            self.send_error_xml(400, "InvalidQueryParameterValue", "blockid must be base64 of at most 64 bytes")
            return 400
        if length > limits["max_block_bytes"]:
            self.drain(length)
            self.send_error_xml(413, "RequestBodyTooLarge", "The request body is too large")
            return 413
        with self.store.lock:
            pending = self.store.uncommitted.get(blob, {})
            committed = self.store.blobs.get(blob, {}).get("blocks", [])
            lengths = {len(name) for name in pending} | {len(name) for name, _ in committed}
            too_many = len(pending) >= limits["max_uncommitted_blocks"] and block_id not in pending
        if lengths and lengths != {len(block_id)}:
            self.drain(length)
            self.send_error_xml(
                400, "InvalidBlobOrBlock", "The specified blob or block content is invalid (block IDs differ in length)"
            )
            return 400
        if too_many:
            self.drain(length)
            self.send_error_xml(409, "BlockCountExceedsLimit", "too many uncommitted blocks")
            return 409
        path = self.store.new_file()
        self.read_body_to(path, length)
        with self.store.lock:
            self.store.uncommitted.setdefault(blob, {})[block_id] = (path, length)
        self.send_empty(201)
        return 201

    def put_block_list(self, blob, query, length):
        if not self.require_length():
            return 411
        body = self.rfile.read(length)
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            self.send_error_xml(400, "InvalidXmlDocument", "the block list is not XML")
            return 400
        if root.tag != "BlockList":
            self.send_error_xml(400, "InvalidXmlDocument", "expected <BlockList>")
            return 400
        entries = [(child.tag, (child.text or "").strip()) for child in root]
        limits = self.store.limits
        if len(entries) > limits["max_committed_blocks"]:
            self.send_error_xml(409, "BlockCountExceedsLimit", "The committed block count cannot exceed 50,000")
            return 409
        with self.store.lock:
            pending = self.store.uncommitted.get(blob, {})
            current = {name: size for name, size in self.store.blobs.get(blob, {}).get("blocks", [])}
            old_file = self.store.blobs.get(blob, {}).get("file")
            chosen = []
            for tag, name in entries:
                if tag in ("Latest", "Uncommitted") and name in pending:
                    chosen.append((name, pending[name][0], pending[name][1]))
                elif tag in ("Latest", "Committed") and name in current:
                    chosen.append((name, None, current[name]))
                else:
                    chosen = None
                    break
        if chosen is None:
            self.send_error_xml(400, "InvalidBlockList", "The specified block list is invalid.")
            return 400
        path = self.store.new_file()
        # Committed blocks kept from the old version are read from the old blob's file.
        offsets, position = {}, 0
        with self.store.lock:
            for name, size in self.store.blobs.get(blob, {}).get("blocks", []):
                offsets[name] = position
                position += size
        with open(path, "wb") as out:
            for name, source, size in chosen:
                if source is not None:
                    with open(source, "rb") as part:
                        shutil.copyfileobj(part, out, 1 << 20)
                else:
                    with open(old_file, "rb") as old:
                        old.seek(offsets[name])
                        out.write(old.read(size))
        with self.store.lock:
            self.store.blobs[blob] = {
                "file": path,
                "size": sum(size for _, _, size in chosen),
                "blocks": [(name, size) for name, _, size in chosen],
            }
            self.store.uncommitted.pop(blob, None)  # uncommitted blocks are discarded on commit
        self.send_empty(201, {"ETag": '"0x2"'})
        return 201

    def get_blob(self, blob, query, length):
        with self.store.lock:
            entry = self.store.blobs.get(blob)
        if entry is None:
            self.send_error_xml(404, "BlobNotFound", "The specified blob does not exist.")
            return 404
        self.send_response(200)
        self.send_header("Content-Length", str(entry["size"]))
        self.send_header("x-ms-blob-type", "BlockBlob")
        self.end_headers()
        with open(entry["file"], "rb") as data:
            shutil.copyfileobj(data, self.wfile, 1 << 20)
        return 200

    def get_block_list(self, blob, query, length):
        kind = query.get("blocklisttype", ["committed"])[0]
        with self.store.lock:
            committed = list(self.store.blobs.get(blob, {}).get("blocks", []))
            pending = [(name, size) for name, (_, size) in self.store.uncommitted.get(blob, {}).items()]
        if not committed and not pending and blob not in self.store.blobs:
            self.send_error_xml(404, "BlobNotFound", "The specified blob does not exist.")
            return 404

        def blocks(items):
            return "".join(f"<Block><Name>{n}</Name><Size>{s}</Size></Block>" for n, s in items)

        xml = '<?xml version="1.0" encoding="utf-8"?><BlockList>'
        if kind in ("committed", "all"):
            xml += f"<CommittedBlocks>{blocks(committed)}</CommittedBlocks>"
        if kind in ("uncommitted", "all"):
            xml += f"<UncommittedBlocks>{blocks(pending)}</UncommittedBlocks>"
        xml += "</BlockList>"
        self.send_xml(200, xml)
        return 200

    # --- test control ----------------------------------------------------------------------

    def control(self, path, length):
        body = self.rfile.read(length) if length else b""
        store = self.store
        if path == "/_control/reset":
            store.reset()
            return self.send_xml(200, "{}")
        if path == "/_control/faults":
            with store.lock:
                store.rules = json.loads(body or b"{}").get("rules", [])
            return self.send_xml(200, "{}")
        if path == "/_control/limits":
            with store.lock:
                store.limits.update(json.loads(body or b"{}"))
            return self.send_xml(200, "{}")
        if path == "/_control/stats":
            with store.lock:
                stats = {
                    "requests": store.requests,
                    "faults": store.faults,
                    "max_inflight_put_block": store.max_inflight,
                    "blobs": {name: {"size": b["size"], "blocks": b["blocks"]} for name, b in store.blobs.items()},
                    "uncommitted": {name: sorted(blocks) for name, blocks in store.uncommitted.items()},
                }
            return self.send_xml(200, json.dumps(stats))
        return self.send_error_xml(404, "NotFound", path)


def block_index(block_id):
    try:
        text = base64.b64decode(block_id).decode("ascii", "replace")
    except Exception:
        return None
    digits = "".join(ch for ch in text if ch.isdigit())
    return int(digits) if digits else None


def escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--sig", required=True, help="the SAS signature every request must carry")
    parser.add_argument("--cert", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--key", help="the certificate's private key (PEM)")
    parser.add_argument("--data", default=None, help="folder for blocks and blobs (default: a temporary one)")
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        sys.exit("refusing to listen anywhere but loopback")
    root = args.data or tempfile.mkdtemp(prefix="azure-blob-test-")
    Handler.store = Store(root)
    Handler.sig = args.sig
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    if args.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        if not args.data:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
