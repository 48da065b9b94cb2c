"""The Gmail API (v1) on 127.0.0.1 for tests, held to Google's published discovery document.

Answers `users.getProfile`, `users.messages.send`, `users.messages.list` (with `q=rfc822msgid:<id>`
and `labelIds`), `users.messages.get` (format raw, metadata, minimal) and `users.history.list`
(404 for a `startHistoryId` older than the kept history, as Gmail does when it has expired).
Bearer tokens are checked in the token server's `TokenBook`, and each method's scopes come from
the discovery document.

Every request it accepts and every response it returns is checked against the discovery
document shipped in google-api-python-client (method path and HTTP method, known and required
parameters, request and response properties and their types); anything off is recorded in
`violations` (a request that is off gets 400). Tests assert `violations == []`.

Faults on demand (`fail_next`): "expired" (401), "scope" (403 insufficientPermissions), "disabled"
(403 accessNotConfigured), "rate" (429 rateLimitExceeded), "user_rate" (403 userRateLimitExceeded),
"daily" (403 dailyLimitExceeded), "server" (500), "invalid_to" (400), and "drop": the request is
carried out, then the connection closes without an answer.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import googleapiclient

from tests.support.google_token_server import TokenBook
from tests.support.local_http import JsonHandler, LocalServer

DISCOVERY = os.path.join(os.path.dirname(googleapiclient.__file__), "discovery_cache", "documents", "gmail.v1.json")
PROJECT = "123456789012"
FAULTS = {
    "expired": (401, "authError", "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
                "other valid authentication credential."),
    "scope": (403, "insufficientPermissions", "PERMISSION_DENIED", "Request had insufficient authentication scopes."),
    "disabled": (403, "accessNotConfigured", "PERMISSION_DENIED",
                 f"Gmail API has not been used in project {PROJECT} before or it is disabled. Enable it by visiting "
                 f"https://console.developers.google.com/apis/api/gmail.googleapis.com/overview?project={PROJECT} "
                 "then retry."),
    "rate": (429, "rateLimitExceeded", "RESOURCE_EXHAUSTED", "Too many concurrent requests for user."),
    "user_rate": (403, "userRateLimitExceeded", "PERMISSION_DENIED", "User-rate limit exceeded."),
    "daily": (403, "dailyLimitExceeded", "PERMISSION_DENIED", "Daily user sending limit exceeded."),
    "server": (500, "backendError", "INTERNAL", "Backend Error"),
    "invalid_to": (400, "invalidArgument", "INVALID_ARGUMENT", "Invalid To header"),
    "not_found": (404, "notFound", "NOT_FOUND", "Requested entity was not found."),
}


def load_discovery() -> dict[str, Any]:
    with open(DISCOVERY, encoding="utf-8") as file:
        return dict(json.load(file))


# -- the discovery document as a contract ---------------------------------------------------------
@dataclass(frozen=True)
class Method:
    id: str
    http_method: str
    pattern: re.Pattern[str]
    spec: dict[str, Any]


def methods(doc: dict[str, Any]) -> list[Method]:
    """Every method in the document with a regular expression for its path."""
    found: list[Method] = []

    def walk(resource: dict[str, Any]) -> None:
        for spec in resource.get("methods", {}).values():
            path = "/" + re.sub(r"\{\+?(\w+)\}", r"(?P<\1>[^/]+)", spec["flatPath"]) + "$"
            found.append(Method(spec["id"], spec["httpMethod"], re.compile(path), spec))
        for child in resource.get("resources", {}).values():
            walk(child)

    walk(doc)
    return found


def schema_problems(doc: dict[str, Any], schema: dict[str, Any], value: Any, where: str) -> list[str]:
    """What in *value* the schema does not allow: unknown properties, wrong types (int64 is a string in JSON)."""
    if "$ref" in schema:
        return schema_problems(doc, doc["schemas"][schema["$ref"]], value, where)
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {type(value).__name__}"]
        problems: list[str] = []
        properties = schema.get("properties")
        for name, item in value.items():
            if properties is not None and name in properties:
                problems += schema_problems(doc, properties[name], item, f"{where}.{name}")
            elif "additionalProperties" in schema:
                problems += schema_problems(doc, schema["additionalProperties"], item, f"{where}.{name}")
            else:
                problems.append(f"{where}.{name}: not a property of {schema.get('id', 'this object')}")
        return problems
    if kind == "array":
        if not isinstance(value, list):
            return [f"{where}: expected an array"]
        return [p for i, item in enumerate(value) for p in schema_problems(doc, schema["items"], item, f"{where}[{i}]")]
    if kind == "string":
        if not isinstance(value, str):
            return [f"{where}: expected a string, got {type(value).__name__}"]
        if schema.get("format") in ("int64", "uint64") and not value.isdigit():
            return [f"{where}: expected a {schema['format']} in a string"]
        if schema.get("format") == "byte" and not re.fullmatch(r"[A-Za-z0-9_\-+/]*=*", value):
            return [f"{where}: expected base64 bytes"]
        if "enum" in schema and value not in schema["enum"]:
            return [f"{where}: {value!r} is not one of {schema['enum']}"]
        return []
    if kind == "integer":
        return [] if isinstance(value, int) and not isinstance(value, bool) else [f"{where}: expected an integer"]
    if kind == "boolean":
        return [] if isinstance(value, bool) else [f"{where}: expected true or false"]
    if kind == "number":
        return [] if isinstance(value, (int, float)) else [f"{where}: expected a number"]
    return [f"{where}: the emulator does not know schema type {kind!r}"]


def parameter_problems(doc: dict[str, Any], method: Method, query: dict[str, list[str]]) -> list[str]:
    """Query parameters the method does not take, required ones missing, values of the wrong type."""
    known = {**doc.get("parameters", {}), **method.spec.get("parameters", {})}
    problems = [f"{method.id}: unknown parameter {name!r}" for name in query if name not in known]
    for name, spec in method.spec.get("parameters", {}).items():
        # some required parameters say so only in words ("Required. Returns history records after...")
        required = spec.get("required") or str(spec.get("description", "")).startswith("Required.")
        if required and spec.get("location") == "query" and name not in query:
            problems.append(f"{method.id}: required parameter {name!r} missing")
    for name, values in query.items():
        spec = known.get(name, {})
        if len(values) > 1 and not spec.get("repeated"):
            problems.append(f"{method.id}: {name!r} given {len(values)} times")
        for value in values:
            if spec.get("type") == "integer" and not value.isdigit():
                problems.append(f"{method.id}: {name!r} = {value!r} is not a whole number")
            if spec.get("format") == "uint64" and not value.isdigit():
                problems.append(f"{method.id}: {name!r} = {value!r} is not a uint64")
            if "enum" in spec and value not in spec["enum"]:
                problems.append(f"{method.id}: {name!r} = {value!r} is not one of {spec['enum']}")
    return problems


# -- the mailbox ------------------------------------------------------------------------------------
@dataclass
class StoredMessage:
    id: str
    thread_id: str
    raw: bytes
    label_ids: list[str]
    history_id: int
    internal_date: int  # epoch milliseconds

    @property
    def parsed(self) -> Any:
        return message_from_bytes(self.raw, policy=policy.default)

    @functools.cached_property
    def message_id(self) -> str:
        return str(self.parsed.get("Message-ID", "")).strip()


@dataclass
class Mailbox:
    address: str
    messages: list[StoredMessage] = field(default_factory=list)
    history_id: int = 1000
    oldest_history: int = 1000  # a startHistoryId below this has expired (404)
    deleted: set[str] = field(default_factory=set)


class GmailEmulator(LocalServer):
    """The local Gmail API; see the module docstring. Use as a context manager."""

    def __init__(self, book: TokenBook) -> None:
        self.book = book
        self.doc = load_discovery()
        self.methods = methods(self.doc)
        self.root = urlparse(self.doc["rootUrl"]).path.rstrip("/")
        self.mailboxes: dict[str, Mailbox] = {}
        self.violations: list[str] = []
        self.refused: set[str] = set()  # To addresses Gmail calls invalid
        self.calls: list[str] = []  # method ids, in order
        self._faults: list[tuple[str, str]] = []  # (method id, kind)
        self._ids = iter(range(0x18C0000000000000, 0x18D0000000000000, 7919))
        self.lock = threading.RLock()

    # -- what a test does -----------------------------------------------------------------------------
    def mailbox(self, address: str) -> Mailbox:
        with self.lock:
            return self.mailboxes.setdefault(address.lower(), Mailbox(address))

    def deliver(self, address: str, raw: bytes, labels: tuple[str, ...] = ("INBOX", "UNREAD")) -> StoredMessage:
        """A message arrives in the mailbox (a reply, a bounce...)."""
        return self._store(self.mailbox(address), raw, list(labels))

    def delete(self, address: str, message: StoredMessage) -> None:
        """Staff delete a message for good: get answers 404 and list omits it; history still has its arrival."""
        with self.lock:
            self.mailbox(address).deleted.add(message.id)

    def sent(self, address: str) -> list[StoredMessage]:
        return [m for m in self.mailbox(address).messages if "SENT" in m.label_ids]

    def fail_next(self, kind: str, method: str = "gmail.users.messages.send", times: int = 1) -> None:
        if kind not in FAULTS and kind != "drop":
            raise ValueError(f"unknown fault {kind!r}")
        with self.lock:
            self._faults += [(method, kind)] * times

    def expire_history(self, address: str) -> None:
        """Every historyId handed out so far is too old now: history.list answers 404."""
        box = self.mailbox(address)
        with self.lock:
            box.history_id += 1
            box.oldest_history = box.history_id

    def _store(self, box: Mailbox, raw: bytes, labels: list[str]) -> StoredMessage:
        with self.lock:
            box.history_id += 1
            message = StoredMessage(f"{next(self._ids):x}", "", raw, labels, box.history_id, int(time.time() * 1000))
            message.thread_id = message.id
            box.messages.append(message)
            return message

    # -- one request ----------------------------------------------------------------------------------
    def handle(self, verb: str, path: str, query: dict[str, list[str]], headers: Any,
               body: bytes) -> tuple[int, dict[str, Any] | None]:
        """(status, JSON answer); None as the answer means: drop the connection without one."""
        if not path.startswith(self.root):
            return self._refuse(f"{verb} {path}: not under {self.root}/")
        relative = path[len(self.root):]
        method = next((m for m in self.methods if m.http_method == verb and m.pattern.match(relative)), None)
        if method is None:
            return self._refuse(f"{verb} {path}: no Gmail v1 method has this path and HTTP method")
        self.calls.append(method.id)
        params = {k: unquote(v) for k, v in method.pattern.match(relative).groupdict().items()}  # type: ignore[union-attr]
        problems = parameter_problems(self.doc, method, query)
        payload: Any = None
        if "request" in method.spec:
            try:
                payload = json.loads(body or b"null")
            except ValueError:
                problems.append(f"{method.id}: the body is not JSON")
            else:
                problems += schema_problems(self.doc, method.spec["request"], payload, method.id)
                required = self.doc["schemas"][method.spec["request"]["$ref"]].get("properties", {})
                for name, spec in required.items():
                    if method.id in spec.get("annotations", {}).get("required", []) and name not in (payload or {}):
                        problems.append(f"{method.id}: required property {name!r} missing")
        elif body:
            problems.append(f"{method.id}: takes no body")
        if problems:
            return self._refuse("; ".join(problems))

        bearer = str(headers.get("Authorization", ""))
        token = self.book.check(bearer[7:]) if bearer.startswith("Bearer ") else None
        if token is None:
            return _error("expired")
        user = params.get("userId", "me")
        if user != "me" and user.lower() != token.subject.lower():
            return 403, _error_body(403, "forbidden", "PERMISSION_DENIED", "Delegation denied for " + token.subject)
        if not token.scopes & set(method.spec.get("scopes", [])):
            return _error("scope")
        fault = self._fault(method.id)
        if fault and fault != "drop":
            return _error(fault)
        box = self.mailbox(token.subject)
        status, answer = self._answer(method, box, params, query, payload)
        if status == 200 and answer is not None:
            for problem in schema_problems(self.doc, method.spec["response"], answer, f"{method.id} response"):
                self.violations.append(problem)
        return (status, None) if fault == "drop" else (status, answer)

    def _fault(self, method_id: str) -> str:
        with self.lock:
            for i, (method, kind) in enumerate(self._faults):
                if method == method_id:
                    del self._faults[i]
                    return kind
        return ""

    def _refuse(self, problem: str) -> tuple[int, dict[str, Any]]:
        self.violations.append(problem)
        return 400, _error_body(400, "badRequest", "INVALID_ARGUMENT", problem)

    def _answer(self, method: Method, box: Mailbox, params: dict[str, str], query: dict[str, list[str]],
                payload: Any) -> tuple[int, dict[str, Any]]:
        one = {k: v[0] for k, v in query.items()}
        if method.id == "gmail.users.getProfile":
            return 200, {"emailAddress": box.address, "messagesTotal": len(box.messages),
                         "threadsTotal": len(box.messages), "historyId": str(box.history_id)}
        if method.id == "gmail.users.messages.send":
            raw = base64.urlsafe_b64decode(payload["raw"] + "=" * (-len(payload["raw"]) % 4))
            to = str(message_from_bytes(raw, policy=policy.default).get("To", ""))
            if not re.search(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+", to) or to.lower() in self.refused:
                code, reason, status, message = FAULTS["invalid_to"]
                return code, _error_body(code, reason, status, f"{message}: {to}")
            stored = self._store(box, raw, ["SENT"])
            return 200, {"id": stored.id, "threadId": stored.thread_id, "labelIds": stored.label_ids}
        if method.id == "gmail.users.messages.list":
            return 200, self._list(box, one.get("q", ""), query.get("labelIds", []), one)
        if method.id == "gmail.users.messages.get":
            found = next((m for m in box.messages if m.id == params["id"] and m.id not in box.deleted), None)
            if found is None:
                return _error("not_found")
            return 200, _message(found, one.get("format", "full"), query.get("metadataHeaders", []))
        if method.id == "gmail.users.history.list":
            return self._history(box, int(one["startHistoryId"]), one.get("labelId"), one)
        return self._refuse(f"{method.id}: not emulated")

    def _list(self, box: Mailbox, q: str, labels: list[str], one: dict[str, str]) -> dict[str, Any]:
        found = [m for m in box.messages if m.id not in box.deleted and all(label in m.label_ids for label in labels)]
        if q:
            wanted = re.fullmatch(r"rfc822msgid:<?([^<>\s]+)>?", q.strip())
            if wanted is None:
                self.violations.append(f"messages.list: the emulator understands only q=rfc822msgid:, not {q!r}")
                return {"resultSizeEstimate": 0}
            found = [m for m in found if m.message_id.strip("<>").lower() == wanted.group(1).lower()]
        found.reverse()  # newest first, as Gmail lists
        start = int(one.get("pageToken", "0") or 0)
        size = int(one.get("maxResults", "100"))
        page = found[start:start + size]
        answer: dict[str, Any] = {"resultSizeEstimate": len(found)}
        if page:
            answer["messages"] = [{"id": m.id, "threadId": m.thread_id} for m in page]
        if start + size < len(found):
            answer["nextPageToken"] = str(start + size)
        return answer

    def _history(self, box: Mailbox, start: int, label: str | None,
                 one: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if start < box.oldest_history:
            return _error("not_found")
        added = [m for m in box.messages if m.history_id > start and (label is None or label in m.label_ids)]
        offset = int(one.get("pageToken", "0") or 0)
        size = int(one.get("maxResults", "100"))
        page = added[offset:offset + size]
        answer: dict[str, Any] = {"historyId": str(box.history_id)}
        if page:
            answer["history"] = [{"id": str(m.history_id), "messages": [{"id": m.id, "threadId": m.thread_id}],
                                  "messagesAdded": [{"message": {"id": m.id, "threadId": m.thread_id,
                                                                 "labelIds": m.label_ids}}]} for m in page]
        if offset + size < len(added):
            answer["nextPageToken"] = str(offset + size)
        return 200, answer


def _message(stored: StoredMessage, form: str, wanted: list[str]) -> dict[str, Any]:
    answer: dict[str, Any] = {"id": stored.id, "threadId": stored.thread_id, "labelIds": stored.label_ids,
                              "historyId": str(stored.history_id), "internalDate": str(stored.internal_date),
                              "sizeEstimate": len(stored.raw)}
    if form == "raw":
        answer["raw"] = base64.urlsafe_b64encode(stored.raw).decode()
    elif form in ("metadata", "full"):
        parsed = message_from_bytes(stored.raw, policy=policy.compat32)
        headers = [{"name": k, "value": str(v)} for k, v in parsed.items()
                   if form == "full" or not wanted or k.lower() in {w.lower() for w in wanted}]
        answer["payload"] = {"mimeType": parsed.get_content_type(), "headers": headers}
    return answer


def _error_body(code: int, reason: str, status: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "errors": [{"message": message, "domain": "global",
                                                                    "reason": reason}], "status": status}}


def _error(kind: str) -> tuple[int, dict[str, Any]]:
    code, reason, status, message = FAULTS[kind]
    return code, _error_body(code, reason, status, message)


class _Handler(JsonHandler):
    owner: GmailEmulator
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, verb: str) -> None:
        url = urlparse(self.path)
        status, answer = self.owner.handle(verb, url.path, parse_qs(url.query), self.headers, self.body())
        if answer is None:  # the request was carried out; the answer is lost
            self.close_connection = True
            return
        self.reply(status, answer)


GmailEmulator.handler = _Handler
