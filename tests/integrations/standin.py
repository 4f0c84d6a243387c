"""Loopback stand-ins for the code hosts' REST APIs, for the integration tests.

GitHub: the recorded exchanges in the shared fixtures (octokit/fixtures: statuses,
branch protection, repository) are answered exactly as recorded, matched on method and
path; what those recordings lack (check runs, issue comments, App installation
tokens) is kept in memory with the fields GitHub documents. An App's JWT is verified
with the App's public key before an installation token is issued, and every other call
must carry a token this stand-in issued or was given. GitLab and Bitbucket: statuses
and notes in memory, with their documented token headers. Every request is kept in
`calls`, so a test asserts the exact API calls made. `stop()` takes the service down
(connections refused) and `start()` brings it back on the same port.
"""

from __future__ import annotations

import functools
import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "github"


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    json: Any


Reply = tuple[int, Any]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class StandIn:
    """A threaded HTTP server on 127.0.0.1 answering with `answer`."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def answer(self, call: Call) -> Reply:
        raise NotImplementedError

    def start(self) -> StandIn:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                call = Call(
                    self.command,
                    unquote(parts.path),
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    json.loads(raw) if raw else None,
                )
                with outer._lock:
                    outer.calls.append(call)
                    status, body = outer.answer(call)
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def made(self) -> list[tuple[str, str]]:
        """(method, path) of every call, in order."""
        with self._lock:
            return [(c.method, c.path) for c in self.calls]


def recorded(name: str) -> list[dict[str, Any]]:
    exchanges: list[dict[str, Any]] = json.loads((FIXTURES / "api" / name).read_text())
    return exchanges


def _shape(path: str) -> str:
    """A recorded path with its owner, repository and commit made wildcards, so the
    recorded answer serves the same call about another repository or commit."""
    parts = path.split("/")
    if len(parts) > 3 and parts[1] == "repos":
        parts[2], parts[3] = "*", "*"
    return "/".join(
        "*" if len(p) == 40 and all(c in "0123456789abcdef" for c in p) else p for p in parts
    )


class GitHubStandIn(StandIn):
    """GitHub's REST API as FlowLoom calls it."""

    def __init__(self, *, tokens: tuple[str, ...] = (), app: tuple[str, str] | None = None):
        """`tokens`: personal tokens accepted; `app`: (App id, its public key PEM)."""
        super().__init__()
        self.tokens = set(tokens)
        self.app = app
        self.recorded: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for name in ("create-status.json", "get-repository.json", "branch-protection.json"):
            for exchange in recorded(name):
                key = (exchange["method"].upper(), _shape(exchange["path"]))
                self.recorded.setdefault(key, []).append(exchange)
        self.protection: dict[str, Any] = {}
        self.check_runs: dict[int, dict[str, Any]] = {}
        self.comments: dict[int, dict[str, Any]] = {}
        self._ids = itertools.count(1001)
        self.fail_next: list[int] = []
        self.missing: set[str] = {"missing"}
        """Repository names answered 404."""

    def _authorized(self, call: Call) -> bool:
        scheme, _, token = call.headers.get("authorization", "").partition(" ")
        return scheme.lower() in ("bearer", "token") and token in self.tokens

    def _installation_token(self, call: Call) -> Reply:
        import jwt

        assert self.app is not None
        token = call.headers.get("authorization", "").partition(" ")[2]
        try:
            claims = jwt.decode(token, self.app[1], algorithms=["RS256"], leeway=0)
        except jwt.PyJWTError as exc:
            return 401, {"message": f"A JSON web token could not be decoded: {exc}"}
        if str(claims.get("iss")) != self.app[0] or claims["exp"] - claims["iat"] > 600:
            return 401, {"message": "'Expiration time' claim ('exp') is too far in the future"}
        issued = f"ghs_standin{next(self._ids)}"
        self.tokens.add(issued)
        expires = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return 201, {"token": issued, "expires_at": expires, "permissions": {"checks": "write"}}

    def answer(self, call: Call) -> Reply:
        if self.fail_next:
            return self.fail_next.pop(0), {"message": "Server Error"}
        if call.method == "POST" and call.path.startswith("/app/installations/"):
            return self._installation_token(call)
        if not self._authorized(call):
            return 401, {"message": "Bad credentials"}
        if call.headers.get("x-github-api-version") != "2022-11-28":
            return 400, {"message": "missing X-GitHub-Api-Version"}
        parts = call.path.strip("/").split("/")
        if call.path.endswith("/protection"):
            return self._protection(call)
        if len(parts) == 6 and parts[3] == "commits" and parts[5] == "check-runs":
            name = call.query.get("check_name", [None])[0]
            runs = [
                r
                for r in self.check_runs.values()
                if r["head_sha"] == parts[4] and (name is None or r["name"] == name)
            ]
            return 200, {"total_count": len(runs), "check_runs": runs}
        if call.method == "POST" and parts[3:] == ["check-runs"]:
            run = {"id": next(self._ids), **call.json}
            self.check_runs[run["id"]] = run
            return 201, run
        if call.method == "PATCH" and parts[3] == "check-runs":
            run = self.check_runs[int(parts[4])]
            run.update(call.json)
            return 200, run
        if parts[3:4] == ["issues"] and parts[-1] == "comments" and call.method == "GET":
            number = int(parts[4])
            page = int(call.query.get("page", ["1"])[0])
            per = int(call.query.get("per_page", ["30"])[0])
            found = [c for c in self.comments.values() if c["number"] == number]
            return 200, found[(page - 1) * per : page * per]
        if parts[3:4] == ["issues"] and parts[-1] == "comments" and call.method == "POST":
            comment = {"id": next(self._ids), "number": int(parts[4]), "body": call.json["body"]}
            self.comments[comment["id"]] = comment
            return 201, comment
        if parts[3:5] == ["issues", "comments"] and call.method == "PATCH":
            comment = self.comments[int(parts[5])]
            comment["body"] = call.json["body"]
            return 200, comment
        return self._replay(call)

    def _protection(self, call: Call) -> Reply:
        key = call.path
        exchanges = self.recorded[(call.method, _shape(call.path))]
        if call.method == "PUT":
            # the recorded answer to the recorded settings, kept for the next GET
            match = [e for e in exchanges if e["body"] == call.json] or exchanges
            self.protection[key] = match[0]["response"]
            return match[0]["status"], match[0]["response"]
        if call.method == "GET" and key in self.protection:
            return 200, self.protection[key]
        return exchanges[0]["status"], exchanges[0]["response"]

    def _replay(self, call: Call) -> Reply:
        exchanges = self.recorded.get((call.method, _shape(call.path)))
        if not exchanges or call.path.split("/")[3] in self.missing:
            return 404, {"message": "Not Found"}
        chosen = next(
            (e for e in exchanges if e["body"] in ("", None) or e["body"] == call.json),
            exchanges[0],
        )
        answer = chosen["response"]
        if isinstance(answer, dict):
            answer = dict(answer)
            if isinstance(call.json, dict):  # a status as asked, in the recorded answer's shape
                answer.update({k: v for k, v in call.json.items() if k in answer})
            if "full_name" in answer:  # the repository asked about, in the recorded shape
                owner, name = call.path.split("/")[2:4]
                answer.update(full_name=f"{owner}/{name}", name=name)
        return chosen["status"], answer


class GitLabStandIn(StandIn):
    """GitLab's REST API v4: project, commit statuses, merge-request notes."""

    def __init__(self, token: str, project: str) -> None:
        super().__init__()
        self.token = token
        self.project = project
        self.statuses: list[dict[str, Any]] = []
        self.notes: dict[int, dict[str, Any]] = {}
        self._ids = itertools.count(501)

    def answer(self, call: Call) -> Reply:
        if call.headers.get("private-token") != self.token:
            return 401, {"message": "401 Unauthorized"}
        prefix = f"/api/v4/projects/{self.project}"
        if not call.path.startswith(prefix):
            return 404, {"message": "404 Project Not Found"}
        rest = call.path[len(prefix) :].strip("/").split("/")
        if rest == [""]:
            return 200, {"id": 7, "path_with_namespace": self.project}
        if rest[0] == "statuses" and call.method == "POST":
            status = {
                "id": next(self._ids),
                "sha": rest[1],
                "status": call.json["state"],
                **call.json,
            }
            self.statuses.append(status)
            return 201, status
        if rest[:1] == ["merge_requests"] and rest[2:3] == ["notes"]:
            iid = int(rest[1])
            if call.method == "GET":
                return 200, [n for n in self.notes.values() if n["iid"] == iid]
            if call.method == "POST":
                note = {"id": next(self._ids), "iid": iid, "body": call.json["body"]}
                self.notes[note["id"]] = note
                return 201, note
            if call.method == "PUT":
                note = self.notes[int(rest[3])]
                note["body"] = call.json["body"]
                return 200, note
        return 404, {"message": "404 Not Found"}


class BitbucketStandIn(StandIn):
    """Bitbucket Cloud's API 2.0: repository and build statuses."""

    def __init__(self, token: str, repo: str) -> None:
        super().__init__()
        self.token = token
        self.repo = repo
        self.statuses: dict[tuple[str, str], dict[str, Any]] = {}

    def answer(self, call: Call) -> Reply:
        if call.headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"type": "error", "error": {"message": "Unauthorized"}}
        prefix = f"/2.0/repositories/{self.repo}"
        if call.path == prefix:
            return 200, {"full_name": self.repo}
        rest = call.path[len(prefix) :].strip("/").split("/")
        if rest[0] == "commit" and rest[2:] == ["statuses", "build"] and call.method == "POST":
            for field in ("state", "key", "url"):
                if not call.json.get(field):
                    return 400, {"type": "error", "error": {"message": f"{field}: required"}}
            status = {"type": "build", **call.json}
            self.statuses[(rest[1], call.json["key"])] = status
            return 201, status
        return 404, {"type": "error", "error": {"message": "Not found"}}


@functools.cache
def rsa_key(which: int = 0) -> tuple[str, str]:
    """An App private key and its public key, PEM (one per `which`, made once a run)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


Factory = Callable[[], StandIn]
