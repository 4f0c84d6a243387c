"""Loopback stand-ins for Splunk's HTTP Event Collector and Elasticsearch's bulk API.

They follow the documented shapes: HEC takes `POST /services/collector/event` with
`Authorization: Splunk <token>` and one or more JSON event objects back to back, and
answers {"text":"Success","code":0} (401 {"text":"Invalid token","code":4} otherwise);
Elastic takes `POST /_bulk` NDJSON action/document pairs and answers
{"took":..,"errors":..,"items":[{"create":{"_id":..,"status":201|409}}]}. Each can be
stopped and started again on the same port (the receiver-down tests).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.auth.slapd import _free_port


class _Server:
    def __init__(self) -> None:
        self.port = _free_port()
        self.requests: list[dict[str, str]] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        raise NotImplementedError

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                owner.requests.append(headers)
                status, answer = owner.handle(self.path, headers, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


class SplunkHec(_Server):
    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token
        self.events: list[dict[str, Any]] = []
        self.hold: threading.Event | None = None
        """When set: a request is stored, then `received` is set and the answer waits for
        `hold` (a sender killed meanwhile never sees its acknowledgement)."""
        self.received = threading.Event()

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        if path != "/services/collector/event":
            return 404, {"text": "The requested URL was not found on this server.", "code": 404}
        if headers.get("authorization") != f"Splunk {self.token}":
            return 401, {"text": "Invalid token", "code": 4}
        decoder, text, pos, got = json.JSONDecoder(), body.decode(), 0, []
        while pos < len(text):
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text):
                break
            item, pos = decoder.raw_decode(text, pos)
            if "event" not in item:
                return 400, {"text": "Event field is required", "code": 12}
            got.append(item)
        self.events += got
        if self.hold is not None:
            self.received.set()
            self.hold.wait(timeout=120)
        return 200, {"text": "Success", "code": 0}


class ElasticBulk(_Server):
    def __init__(self, api_key: str) -> None:
        super().__init__()
        self.api_key = api_key
        self.docs: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        if path != "/_bulk":
            return 404, {"error": "no handler", "status": 404}
        if headers.get("authorization") != f"ApiKey {self.api_key}":
            return 401, {"error": {"type": "security_exception"}, "status": 401}
        if headers.get("content-type") != "application/x-ndjson":
            return 406, {"error": "Content-Type header is not supported", "status": 406}
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        items, errors = [], False
        for action, doc in zip(lines[::2], lines[1::2], strict=True):
            meta = action["create"]
            key = f"{meta['_index']}/{meta['_id']}"
            if key in self.docs:
                errors = True
                items.append({"create": {"_id": meta["_id"], "status": 409}})
                continue
            self.docs[key] = doc
            self.order.append(key)
            items.append({"create": {"_id": meta["_id"], "status": 201, "result": "created"}})
        return 200, {"took": 1, "errors": errors, "items": items}
