"""Google's OAuth token endpoint on 127.0.0.1 for tests, with the checks Google makes.

A test asks for a service-account key (`new_key`): a fresh RSA key whose `token_uri` is this
server. google-auth, unmodified, signs a JWT with it and posts it here; the server verifies the
RS256 signature against the key's public half and the claims (`iss`, `sub` = the delegated user,
`scope`, `aud`, `exp`), then issues an access token, but only for scopes the test granted that
subject in "domain-wide delegation" (`grant`); otherwise it answers like Google:
``400 {"error": "unauthorized_client", ...}``.

Issued tokens live in a `TokenBook` that the other stand-ins (Gmail emulator, SMTP server,
Dovecot's introspection endpoint here at ``/introspect``) ask; `expire_all` and `revoke` let a
test make the tokens in hand stop working.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.support.local_http import JsonHandler, LocalServer

GOOGLE_AUDIENCE = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
UNAUTHORIZED_CLIENT = ("Client is unauthorized to retrieve access tokens using this method, or client not "
                       "authorized for any of the scopes requested.")


@dataclass(frozen=True)
class Token:
    """One issued access token: who it acts as, for which scopes, until when (monotonic seconds)."""

    subject: str
    scopes: frozenset[str]
    expires: float
    issuer: str = "google"
    mailboxes: frozenset[str] = frozenset()  # an app-only (Microsoft) token: the mailboxes the app may open

    def opens(self, mailbox: str) -> bool:
        """True when this token signs in to *mailbox* (the delegated user, or a mailbox the app was given)."""
        return mailbox.lower() == self.subject.lower() or mailbox.lower() in self.mailboxes


@dataclass
class TokenBook:
    """Access tokens issued by the local Google and Microsoft stand-ins; the resource servers ask it."""

    tokens: dict[str, Token] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self, subject: str, scopes: frozenset[str], lifetime: int, issuer: str,
              mailboxes: frozenset[str] = frozenset()) -> str:
        value = f"ya29.test-{secrets.token_urlsafe(24)}" if issuer == "google" else f"eyJ0.test-{secrets.token_urlsafe(24)}"
        with self.lock:
            self.tokens[value] = Token(subject, scopes, time.monotonic() + lifetime, issuer, mailboxes)
        return value

    def check(self, value: str) -> Token | None:
        """The token's grant, or None when it is unknown, expired or revoked."""
        with self.lock:
            token = self.tokens.get(value)
        if token is None or token.expires <= time.monotonic():
            return None
        return token

    def expire_all(self) -> None:
        """Every token issued so far stops working, as after an hour has passed."""
        with self.lock:
            self.tokens = {k: Token(t.subject, t.scopes, 0.0, t.issuer, t.mailboxes) for k, t in self.tokens.items()}

    def issued(self, issuer: str | None = None) -> int:
        with self.lock:
            return sum(1 for t in self.tokens.values() if issuer is None or t.issuer == issuer)


@dataclass
class _Account:
    client_email: str
    client_id: str
    public_key: rsa.RSAPublicKey
    enabled: bool = True


class GoogleTokenServer(LocalServer):
    """The token endpoint; see the module docstring. Use as a context manager."""

    def __init__(self, book: TokenBook | None = None, lifetime: int = 3600) -> None:
        self.book = book or TokenBook()
        self.lifetime = lifetime
        self.accounts: dict[str, _Account] = {}  # by private_key_id
        self.grants: dict[tuple[str, str], set[str]] = {}  # (client_id, subject) -> scopes
        self.requests: list[dict[str, Any]] = []  # verified JWT claims, in order
        self.refusals: list[str] = []

    # -- what a test sets up -----------------------------------------------------------------------
    def new_key(self, client_email: str = "partnerloop@clinic-project.iam.gserviceaccount.com") -> dict[str, Any]:
        """A service-account key file's content, as Google's console downloads it, pointing at this server."""
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_id = secrets.token_hex(20)
        client_id = str(100000000000000000000 + len(self.accounts))
        self.accounts[key_id] = _Account(client_email, client_id, private.public_key())
        pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
        return {"type": "service_account", "project_id": "clinic-project", "private_key_id": key_id,
                "private_key": pem, "client_email": client_email, "client_id": client_id,
                "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": f"{self.url}/token"}

    def grant(self, key: dict[str, Any], subject: str, *scopes: str) -> None:
        """Domain-wide delegation: the key's client may act as *subject* with *scopes* (added to earlier ones)."""
        self.grants.setdefault((key["client_id"], subject), set()).update(scopes)

    def ungrant(self, key: dict[str, Any], subject: str) -> None:
        self.grants.pop((key["client_id"], subject), None)

    def disable_key(self, key: dict[str, Any]) -> None:
        """The key was deleted in the console: its JWTs are refused (invalid_grant)."""
        self.accounts[key["private_key_id"]].enabled = False

    # -- the endpoint ------------------------------------------------------------------------------
    def token_request(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("grant_type") != JWT_BEARER:
            return 400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}
        try:
            claims, account = self._verify(form.get("assertion", ""))
        except ValueError as exc:
            self.refusals.append(str(exc))
            return 400, {"error": "invalid_grant", "error_description": str(exc)}
        self.requests.append(claims)
        subject = str(claims.get("sub", account.client_email))
        scopes = frozenset(str(claims.get("scope", "")).split())
        granted = self.grants.get((account.client_id, subject), set())
        if subject != account.client_email and not scopes <= granted:
            self.refusals.append(f"unauthorized_client for {subject}: {' '.join(sorted(scopes - granted))}")
            return 400, {"error": "unauthorized_client", "error_description": UNAUTHORIZED_CLIENT}
        token = self.book.issue(subject, scopes, self.lifetime, "google")
        return 200, {"access_token": token, "expires_in": self.lifetime, "token_type": "Bearer"}

    def _verify(self, assertion: str) -> tuple[dict[str, Any], _Account]:
        """The JWT's claims once its signature and claims check out; ValueError with Google's wording otherwise."""
        try:
            head, body, signature = assertion.split(".")
            header = json.loads(_unb64(head))
            claims = json.loads(_unb64(body))
        except ValueError:
            raise ValueError("Invalid JWT: malformed assertion") from None
        if header.get("alg") != "RS256":
            raise ValueError("Invalid JWT: signing algorithm must be RS256")
        account = self.accounts.get(str(header.get("kid", "")))
        if account is None or not account.enabled:
            raise ValueError("Invalid JWT Signature.")
        try:
            account.public_key.verify(_unb64(signature), f"{head}.{body}".encode(), padding.PKCS1v15(),
                                      hashes.SHA256())
        except InvalidSignature:
            raise ValueError("Invalid JWT Signature.") from None
        if claims.get("iss") != account.client_email:
            raise ValueError("Invalid JWT: iss is not the key's client_email")
        if claims.get("aud") != GOOGLE_AUDIENCE:
            raise ValueError("Invalid JWT: Failed audience check.")
        now = time.time()
        if not isinstance(claims.get("exp"), int) or claims["exp"] <= now or claims["exp"] - claims.get("iat", 0) > 3600:
            raise ValueError("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.")
        if not claims.get("scope"):
            raise ValueError("Invalid JWT: no scope")
        return claims, account

    def introspect(self, value: str) -> dict[str, Any]:
        """RFC 7662-style answer for Dovecot's oauth2 passdb: active, and whose mailbox the token opens."""
        token = self.book.check(value)
        if token is None:
            return {"active": False}
        # an app-only (Microsoft) token opens the mailbox the app was given; a delegated one, its user's
        mailbox = next(iter(token.mailboxes)) if len(token.mailboxes) == 1 else token.subject
        return {"active": True, "email": mailbox, "scope": " ".join(sorted(token.scopes))}


class _Handler(JsonHandler):
    owner: GoogleTokenServer

    def do_POST(self) -> None:
        form = self.form()
        path = urlparse(self.path).path
        if path == "/token":
            self.reply(*self.owner.token_request(form))
        elif path == "/introspect":
            self.reply(200, self.owner.introspect(form.get("token", "")))
        else:
            self.reply(404, {"error": "not_found"})

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/introspect":
            bearer = self.headers.get("Authorization", "")
            value = bearer[7:] if bearer.lower().startswith("bearer ") else parse_qs(url.query).get("token", [""])[0]
            self.reply(200, self.owner.introspect(value))
        else:
            self.reply(404, {"error": "not_found"})


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def write_key(path: Any, key: dict[str, Any]) -> Any:
    """Write a key file as Google's console downloads it; returns *path*."""
    path.write_text(json.dumps(key, indent=2), encoding="utf-8")
    return path


GoogleTokenServer.handler = _Handler
