"""A real SMTP server on 127.0.0.1 for tests: plain, STARTTLS or SSL, with AUTH and faults on demand.

Built on aiosmtpd's Controller (its own thread and event loop). Certificates are throwaway ones
from trustme; `client_ssl_context()` trusts them. Faults mimic what real servers do:

- ``refuse(address, code, text)``: refuse one recipient at RCPT;
- ``fail_next(n, code=421)``: the next n transactions get `code` at MAIL (421 also closes the connection);
- ``drop_after(n)``: close the connection right after the n-th further message is accepted (its
  250 reply still goes out; the client finds the connection gone at its next command);
- ``drop_before_reply(n)``: take the next n messages but close the connection instead of answering;
- ``delay(seconds)``: wait that long before answering the end of DATA (the message is already taken);
- ``garble_reply(n)``: take the next n messages but answer the end of DATA with a line that is not an
  SMTP reply (a broken proxy or server), then close the connection.

With ``tokens=`` (a TokenBook of the local Google or Microsoft stand-in) the server also offers
AUTH XOAUTH2 and accepts a bearer token the book knows for that very mailbox; a refused token
gets Google's answer (334 with a base64 JSON status, then 535 after the client's empty line).
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
import threading
import warnings
from dataclasses import dataclass, field, replace
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser, Parser
from pathlib import Path
from types import TracebackType
from typing import Any, Self, cast

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from automations.config import EmailSettings, SendWindow

HOST = "127.0.0.1"
_CA: trustme.CA | None = None
_CA_LOCK = threading.Lock()


def _ca() -> trustme.CA:
    """One throwaway certificate authority per test session (creating one takes a few ms)."""
    global _CA
    with _CA_LOCK:
        if _CA is None:
            _CA = trustme.CA()
        return _CA


@dataclass(frozen=True)
class ReceivedMessage:
    """One message as the server took it: the SMTP envelope and the parsed content."""

    envelope_from: str
    recipients: list[str]
    message: EmailMessage
    raw: bytes
    mail_options: list[str] = field(default_factory=list)
    peer: str = ""


@dataclass
class _Faults:
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)
    fail_count: int = 0
    fail_code: int = 421
    drop_after: int | None = None
    drop_before_reply: int = 0
    delay: float = 0.0
    garble: int = 0


class SmtpServer:
    """A loopback SMTP server that records what arrives; see the module docstring for faults."""

    def __init__(
        self,
        security: str = "none",
        auth: tuple[str, str] | None = None,
        smtputf8: bool = True,
        tokens: Any = None,
    ) -> None:
        if security not in ("none", "starttls", "ssl"):
            raise ValueError("security must be 'none', 'starttls' or 'ssl'")
        self.security = security
        self.auth = auth
        self.smtputf8 = smtputf8
        self.tokens = tokens
        self.host = HOST
        self.port = 0
        self._lock = threading.Lock()
        self._messages: list[ReceivedMessage] = []
        self._faults = _Faults()
        self._connections = 0
        self._logins: list[str] = []
        self._controller: Controller | None = None
        self._certificate = _ca().issue_cert(HOST, "localhost")

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> SmtpServer:
        if self._controller is not None:
            return self
        self.port = _free_port()
        server_context = self._server_ssl_context()
        parameters: dict[str, Any] = {
            "hostname": HOST,
            "port": self.port,
            "enable_SMTPUTF8": self.smtputf8,
            "server_hostname": "partnerloop-test",
            "ready_timeout": 5.0,
        }
        if self.security == "ssl":
            parameters["ssl_context"] = server_context
        if self.security == "starttls":
            parameters["tls_context"] = server_context
            parameters["require_starttls"] = True
        if self.auth is not None or self.tokens is not None:
            parameters["authenticator"] = self._authenticate
            parameters["auth_required"] = True
            # Implicit TLS is not seen by aiosmtpd as "TLS"; plain connections are allowed only in tests.
            parameters["auth_require_tls"] = self.security == "starttls"
        handler = _OAuthHandler(self) if self.tokens is not None else _Handler(self)
        self._controller = _CountingController(self, handler, **parameters)
        self._controller.start()
        with self._lock:
            self._connections = 0  # the controller's own start-up probe is not a client
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- what arrived -------------------------------------------------------------------

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self._lock:
            return list(self._messages)

    @property
    def connections(self) -> int:
        """How many client connections the server has seen since start or reset()."""
        with self._lock:
            return self._connections

    @property
    def logins(self) -> list[str]:
        """Usernames that logged in successfully."""
        with self._lock:
            return list(self._logins)

    def arrivals(self, message_id: str) -> int:
        """How many times a message with this Message-ID arrived."""
        return sum(1 for m in self.messages if m.message["Message-ID"] == message_id)

    # --- faults -------------------------------------------------------------------------

    def refuse(self, address: str, code: int = 550, text: str = "No such user") -> None:
        with self._lock:
            self._faults.refused[address.lower()] = (code, text)

    def fail_next(self, n: int, code: int = 421) -> None:
        with self._lock:
            self._faults.fail_count = n
            self._faults.fail_code = code

    def drop_after(self, n: int) -> None:
        with self._lock:
            self._faults.drop_after = n

    def drop_before_reply(self, n: int = 1) -> None:
        with self._lock:
            self._faults.drop_before_reply = n

    def garble_reply(self, n: int = 1) -> None:
        with self._lock:
            self._faults.garble = n

    def delay(self, seconds: float) -> None:
        with self._lock:
            self._faults.delay = seconds

    def reset(self) -> None:
        """Forget received messages, counters and faults."""
        with self._lock:
            self._messages.clear()
            self._faults = _Faults()
            self._connections = 0
            self._logins.clear()

    # --- TLS ----------------------------------------------------------------------------

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's throwaway certificate authority."""
        context = ssl.create_default_context()
        _ca().configure_trust(context)
        return context

    def _server_ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._certificate.configure_cert(context)
        return context

    # --- called from the server thread --------------------------------------------------

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if self.auth is None or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        username, password = self.auth
        ok = auth_data.login == username.encode() and auth_data.password == password.encode()
        if ok:
            with self._lock:
                self._logins.append(username)
        return AuthResult(success=ok, handled=False)

    def _record(self, envelope: Envelope, peer: Any) -> None:
        raw = envelope.original_content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        received = ReceivedMessage(
            envelope_from=str(envelope.mail_from or ""),
            recipients=list(envelope.rcpt_tos),
            message=parse_message(raw),
            raw=raw,
            mail_options=list(envelope.mail_options),
            peer=str(peer),
        )
        with self._lock:
            self._messages.append(received)

    def _connected(self) -> None:
        with self._lock:
            self._connections += 1


class _Handler:
    """aiosmtpd hooks: faults at MAIL, RCPT and DATA; recording at DATA."""

    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_MAIL(
        self, smtp: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        with self.server._lock:
            faults = self.server._faults
            if faults.fail_count > 0:
                faults.fail_count -= 1
                code = faults.fail_code
            else:
                code = 0
        if code:
            if code == 421:
                _close_after_reply(smtp)
                return "421 4.3.2 Service not available, closing transmission channel"
            return f"{code} Try again later"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, smtp: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        with self.server._lock:
            refusal = self.server._faults.refused.get(address.lower())
        if refusal is not None:
            return f"{refusal[0]} {refusal[1]}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        self.server._record(envelope, session.peer)
        with self.server._lock:
            faults = self.server._faults
            delay = faults.delay
            swallow = faults.drop_before_reply > 0
            if swallow:
                faults.drop_before_reply -= 1
            garble = faults.garble > 0
            if garble:
                faults.garble -= 1
            drop = False
            if faults.drop_after is not None:
                faults.drop_after -= 1
                if faults.drop_after <= 0:
                    faults.drop_after = None
                    drop = True
        if swallow:
            if isinstance(smtp.transport, asyncio.Transport):
                smtp.transport.abort()  # like a crash or a cut cable: no reply, no goodbye
            return "250 OK (never seen by the client)"
        if garble:
            _close_after_reply(smtp)
            return "OK, got it"
        if delay:
            await asyncio.sleep(delay)
        if drop:
            _close_after_reply(smtp)
        return "250 OK queued"


class _OAuthHandler(_Handler):
    """Adds AUTH XOAUTH2 (SASL, as Gmail and Exchange Online take it) checked against the token book."""

    async def auth_XOAUTH2(self, smtp: SMTP, args: list[str]) -> AuthResult:
        response = args[1] if len(args) > 1 else ""
        if not response:
            answer = await smtp.challenge_auth("", encode_to_b64=False)
            response = answer.decode() if isinstance(answer, bytes) else ""
        try:
            fields = dict(part.split("=", 1) for part in base64.b64decode(response).decode().split("\x01") if part)
        except ValueError:
            return AuthResult(success=False, handled=False, message="501 5.5.2 Cannot decode XOAUTH2")
        user, bearer = fields.get("user", ""), fields.get("auth", "")
        token = self.server.tokens.check(bearer[7:]) if bearer.startswith("Bearer ") else None
        if token is None or not token.opens(user):
            status = base64.b64encode(b'{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}')
            await smtp.challenge_auth(status, encode_to_b64=False)  # the client answers with an empty line
            return AuthResult(success=False, handled=False,
                              message="535 5.7.8 Username and Password not accepted")
        with self.server._lock:
            self.server._logins.append(user)
        return AuthResult(success=True, auth_data=user)


def parse_message(raw: bytes) -> EmailMessage:
    """Parse a message as a mail client would (email.parser, policy default).

    SMTPUTF8 messages carry raw UTF-8 in their headers (RFC 6532); BytesParser would leave those
    bytes as surrogate escapes, so such messages are decoded as UTF-8 first.
    """
    if not raw.isascii():
        try:
            parsed = Parser(policy=policy.default).parsestr(raw.decode("utf-8"))
        except UnicodeDecodeError:
            parsed = BytesParser(policy=policy.default).parsebytes(raw)
    else:
        parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _close_after_reply(smtp: SMTP) -> None:
    """Close the connection once the reply now being returned has been written."""
    transport = smtp.transport
    if transport is not None:
        asyncio.get_running_loop().call_soon(transport.close)


class _CountingController(Controller):
    """A Controller that counts client connections (one SMTP instance per connection)."""

    def __init__(self, owner: SmtpServer, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.owner = owner

    def factory(self) -> SMTP:
        self.owner._connected()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "AUTH without TLS": deliberate, tests only
            return cast(SMTP, super().factory())  # type: ignore[no-untyped-call]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def email_section(server: SmtpServer, **overrides: Any) -> dict[str, Any]:
    """The `[email]` config section (as a dict) that sends through *server*; *overrides* win key by key."""
    return {"transport": "smtp", "host": server.host, "port": server.port, "security": server.security,
            "timeout": 5, **overrides}


def email_settings_for(server: SmtpServer, **overrides: Any) -> EmailSettings:
    """[email] settings pointing at *server*; the username is the server's, the password is passed to the transport."""
    settings = EmailSettings(
        transport="smtp",
        outbox_dir=Path("outbox"),
        host=server.host,
        port=server.port,
        security=server.security,
        username=server.auth[0] if server.auth else "",
        password_env="",
        timeout=5.0,
        daily_limit=1000,
        per_minute=0,
        send_window=SendWindow.parse("Mon-Sun 00:00-23:59"),
    )
    return replace(settings, **overrides)
