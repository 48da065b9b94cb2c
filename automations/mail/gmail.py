"""Sending and reading the clinic's Google Workspace mailbox through the Gmail API.

`GmailTransport` sends with `users.messages.send` (the RFC 5322 bytes, base64url), so the mail is
in the mailbox's Sent folder where staff look for it. The same exactly-once rules as over SMTP:
a request whose answer is lost (timeout, reset, 5xx) is an unknown outcome and is never sent
again by the transport; it is settled by looking its Message-ID up (`GmailMailbox.find_sent`).
A 429 or rate-limit answer holds the rest for the next run; Gmail's daily sending limit stops
the run with a clear line.

`GmailMailbox` reads new messages since a saved historyId (`users.history.list`), and reads
the inbox again when Gmail no longer keeps that history (404).
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import requests

from automations.config import EmailSettings, Settings
from automations.core import InboundMessage, Inbox
from automations.errors import MailError
from automations.mail.handover import (
    AuthFailed,
    Managed,
    OutcomeUnknown,
    RecipientRefused,
    TemporaryFailure,
    envelope,
    message_bytes,
)
from automations.mail.inbound import UnreadableMessage, parse_message
from automations.mail.message import needs_smtputf8
from automations.mail.oauth import GMAIL_READ, GMAIL_SEND, GoogleTokens, TokenSource

log = logging.getLogger("partnerloop")

BATCH = 500  # messages read per run at most; on a full read, the newest
RATE_REASONS = ("rateLimitExceeded", "userRateLimitExceeded")
PROJECT_CONSOLE = "Google Cloud console > APIs & Services > Library > Gmail API > Enable"


@dataclass(frozen=True)
class GmailAnswer:
    """A Gmail API error answer: HTTP status, Google's reason code and message."""

    status: int
    reason: str
    message: str


class GmailRefused(MailError):
    """Gmail answered with an error; `answer` keeps status and reason for the caller to decide."""

    def __init__(self, line: str, answer: GmailAnswer) -> None:
        super().__init__(line)
        self.answer = answer


class GmailApi:
    """Authorised calls to one mailbox's Gmail API; a 401 fetches a fresh token and asks once more."""

    def __init__(self, settings: EmailSettings, scopes: Sequence[str], *, tokens: TokenSource | None = None,
                 session: requests.Session | None = None) -> None:
        self.settings = settings
        self.base = f"{settings.google.api_endpoint}/gmail/v1/users/me"
        self.session = session or requests.Session()
        self.tokens = tokens or GoogleTokens(settings.google, scopes)
        self.mailbox = self.tokens.mailbox

    def call(self, verb: str, path: str, *, params: Any = None, body: Any = None) -> dict[str, Any]:
        """One request; raises GmailRefused on an error answer, requests' errors on a lost connection."""
        for attempt in range(2):
            response = self.session.request(
                verb, self.base + path, params=params, json=body, timeout=self.settings.timeout,
                headers={"Authorization": f"Bearer {self.tokens.token(fresh=attempt > 0)}"})
            if response.status_code == 401 and attempt == 0:
                continue  # the token expired early or was revoked: Gmail did nothing, so asking again is safe
            if response.status_code >= 400:
                answer = _answer(response)
                raise GmailRefused(self.explain(answer), answer)
            try:
                return dict(response.json())
            except ValueError:  # done, but the answer is unreadable: what matters is that Gmail took it
                return {}
        raise AssertionError("unreachable")

    def explain(self, answer: GmailAnswer) -> str:
        """One line naming the fix for errors about the set-up; Google's own words otherwise."""
        user = self.mailbox
        if answer.status == 401:
            return (f"Gmail refused the sign-in for {user} even with a new token ({answer.message}); check the "
                    "service account's domain-wide delegation")
        if answer.reason == "accessNotConfigured" or "has not been used in project" in answer.message:
            return f"the Gmail API is turned off for the service account's project: turn it on in {PROJECT_CONSOLE}"
        if answer.reason == "insufficientPermissions":
            return (f"Gmail refused {user}: the token lacks a scope; an administrator grants "
                    f"{GMAIL_SEND} and {GMAIL_READ} in domain-wide delegation")
        if answer.reason == "failedPrecondition" or "Mail service not enabled" in answer.message:
            return f"Gmail is not turned on for {user} in Google Workspace; an administrator turns it on"
        return f"Gmail API {answer.status} {answer.reason}: {answer.message}"


def _answer(response: requests.Response) -> GmailAnswer:
    try:
        error = response.json().get("error", {})
        reason = str((error.get("errors") or [{}])[0].get("reason", error.get("status", "")))
        return GmailAnswer(response.status_code, reason, " ".join(str(error.get("message", "")).split())[:200])
    except (ValueError, AttributeError):
        return GmailAnswer(response.status_code, "", response.reason or "")


def is_sending_limit(answer: GmailAnswer) -> bool:
    text = answer.message.lower()
    return answer.reason == "dailyLimitExceeded" or "sending limit" in text or "sending quota" in text


class GmailTransport(Managed):
    """Sends each message with users.messages.send as `[email.google] user`."""

    def __init__(self, settings: EmailSettings, *, tokens: TokenSource | None = None,
                 session: requests.Session | None = None) -> None:
        self.settings = settings
        self._tokens = tokens
        self._session = session
        self.api: GmailApi | None = None
        self.where = "Gmail API"

    def open(self) -> None:
        """Sign in and read the mailbox profile, so a run that cannot send stops before any send."""
        if self.api is not None:
            return
        api = GmailApi(self.settings, (GMAIL_SEND, GMAIL_READ), tokens=self._tokens, session=self._session)
        try:
            profile = api.call("GET", "/profile")
        except GmailRefused as exc:
            raise AuthFailed(str(exc)) from None
        except requests.RequestException as exc:
            raise TemporaryFailure(f"cannot reach the Gmail API ({_reason(exc)}); the next run will try again") from None
        self.where = f"Gmail API as {profile.get('emailAddress', api.mailbox)}"
        self.api = api

    def close(self) -> None:
        self.api = None

    def send(self, message: EmailMessage) -> str:
        sender, recipient = envelope(message)
        self.open()
        assert self.api is not None
        data = message_bytes(message, utf8=needs_smtputf8(sender) or needs_smtputf8(recipient))
        raw = base64.urlsafe_b64encode(data).decode("ascii")
        try:
            sent = self.api.call("POST", "/messages/send", body={"raw": raw})
        except GmailRefused as exc:
            answer = replace(exc.answer, message=_without(exc.answer.message, recipient))
            raise self._refusal(answer, _without(str(exc), recipient)) from None
        except requests.RequestException as exc:
            if _never_left(exc):
                raise TemporaryFailure(f"{self.where}: cannot connect ({_reason(exc)}); the next run will try "
                                       "again") from None
            raise self._unknown(_reason(exc)) from None  # timeout, reset: the request may have arrived
        return f"Gmail id {sent.get('id', '?')}"

    def _unknown(self, reason: str) -> OutcomeUnknown:
        return OutcomeUnknown(f"{self.where}: no answer after the message was handed over ({reason}); it may or "
                              "may not be sent, so it is not sent again automatically")

    def _refusal(self, answer: GmailAnswer, line: str) -> Exception:
        """The exception the executor acts on for an error answer to a send."""
        if is_sending_limit(answer):
            return MailError(f"{self.where}: Gmail's daily sending limit for this mailbox is reached "
                             f"({answer.message}); the rest goes out on the next run after Gmail lifts it "
                             "(lower [email] daily_limit to stay under it)")
        if answer.status == 429 or answer.reason in RATE_REASONS:
            return TemporaryFailure(f"{self.where}: Gmail asks to slow down ({answer.reason or answer.status}); "
                                    "the rest is held for the next run")
        if answer.status >= 500:
            return self._unknown(f"Gmail answered {answer.status} {answer.reason}")
        if answer.status == 400:
            return RecipientRefused(f"Gmail refused the message: {answer.message}", answer.status)
        if answer.status in (401, 403):
            return AuthFailed(f"{self.where}: {line}")
        return MailError(f"{self.where}: {line}")


def _never_left(exc: requests.RequestException) -> bool:
    """True when the connection was never made, so Gmail cannot have the message."""
    if isinstance(exc, (requests.ConnectTimeout, requests.exceptions.SSLError)):
        return True
    text = repr(exc)
    return "NewConnectionError" in text or "Failed to establish" in text or "NameResolutionError" in text


def _without(text: str, address: str) -> str:
    """Google's words with the recipient's address taken out (it may be a patient's)."""
    return re.sub(re.escape(address), "the recipient", text, flags=re.IGNORECASE) if address else text


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:160] or type(exc).__name__


class GmailMailbox:
    """The configured Gmail mailbox, read through the API (scope gmail.readonly)."""

    def __init__(self, settings: EmailSettings, *, tokens: TokenSource | None = None,
                 session: requests.Session | None = None, batch: int = BATCH) -> None:
        self.api = GmailApi(settings, (GMAIL_READ,), tokens=tokens, session=session)
        self.batch = batch

    def read_new(self, position: str | None) -> tuple[tuple[InboundMessage, ...], str]:
        """Messages since *position* (opaque text saved by the caller; None = first read), oldest
        first, and the new position. users.history.list from the saved historyId; on 404 (history
        expired) a full resync (users.messages.list) — safe because the replies job changes
        nothing twice for the same message."""
        try:
            ids, latest = self._changes(self._history_id(position))
            raws = [raw for raw in map(self._raw, ids) if raw is not None]
            messages = [self._parsed(raw, n) for n, raw in enumerate(raws, start=1)]
        except GmailRefused as exc:
            raise MailError(f"Gmail mailbox {self.api.mailbox}: {exc}") from None
        except requests.RequestException as exc:
            raise MailError(f"Gmail mailbox {self.api.mailbox}: cannot reach the Gmail API ({_reason(exc)}); the "
                            "next run will try again") from None
        return tuple(messages), json.dumps({"mailbox": f"gmail:{self.api.mailbox.lower()}", "historyId": latest})

    def _history_id(self, position: str | None) -> str | None:
        """The historyId saved for this very mailbox, or None (first read, another mailbox, or IMAP's position)."""
        try:
            saved = json.loads(position or "")
            if saved.get("mailbox") == f"gmail:{self.api.mailbox.lower()}":
                return str(saved["historyId"])
        except (ValueError, AttributeError, KeyError):
            pass
        return None

    def find_sent(self, message_ids: Sequence[str]) -> set[str]:
        """Which of these Message-IDs are in the mailbox (users.messages.list q=rfc822msgid:<id>)."""
        found: set[str] = set()
        try:
            for message_id in message_ids:
                answer = self.api.call("GET", "/messages", params={"q": f"rfc822msgid:{message_id.strip('<>')}",
                                                                    "includeSpamTrash": "true"})
                if answer.get("messages"):
                    found.add(message_id)
        except GmailRefused as exc:
            raise MailError(f"Gmail mailbox {self.api.mailbox}: {exc}") from None
        except requests.RequestException as exc:
            raise MailError(f"Gmail mailbox {self.api.mailbox}: cannot reach the Gmail API ({_reason(exc)})") from None
        return found

    def _changes(self, history_id: str | None) -> tuple[list[str], str]:
        """IDs of the inbox messages added since *history_id*, oldest first, and the mailbox's historyId now."""
        if history_id and history_id.isdigit():
            try:
                return self._history(history_id)
            except GmailRefused as exc:
                if exc.answer.status != 404:
                    raise
                log.info("Gmail mailbox: the saved history has expired; reading the inbox again")
        latest = str(self.api.call("GET", "/profile").get("historyId", ""))
        ids: list[str] = []
        token: str | None = None
        while len(ids) < self.batch:
            params = {"labelIds": "INBOX", "maxResults": str(min(500, self.batch - len(ids)))}
            answer = self.api.call("GET", "/messages", params={**params, **({"pageToken": token} if token else {})})
            ids += [m["id"] for m in answer.get("messages", [])]
            token = answer.get("nextPageToken")
            if not token:
                break
        return list(reversed(ids)), latest  # Gmail lists newest first

    def _history(self, start: str) -> tuple[list[str], str]:
        ids: list[str] = []
        latest = start
        token: str | None = None
        while True:
            params = {"startHistoryId": start, "historyTypes": "messageAdded", "labelId": "INBOX"}
            answer = self.api.call("GET", "/history", params={**params, **({"pageToken": token} if token else {})})
            for record in answer.get("history", []):
                for added in record.get("messagesAdded", []):
                    message_id = added["message"]["id"]
                    if message_id not in ids:
                        ids.append(message_id)
            latest = str(answer.get("historyId", latest))
            token = answer.get("nextPageToken")
            if not token:
                return ids, latest

    def _raw(self, message_id: str) -> tuple[str, bytes, datetime | None] | None:
        """(id, RFC 5322 bytes, when Gmail received it), or None when it was deleted since it was listed."""
        try:
            answer = self.api.call("GET", f"/messages/{message_id}", params={"format": "raw"})
        except GmailRefused as exc:
            if exc.answer.status == 404:
                return None
            raise
        text = str(answer.get("raw", ""))
        millis = str(answer.get("internalDate", ""))
        received = datetime.fromtimestamp(int(millis) / 1000, UTC) if millis.isdigit() else None
        return message_id, base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), received

    @staticmethod
    def _parsed(raw: tuple[str, bytes, datetime | None], ordinal: int) -> InboundMessage:
        message_id, data, received = raw
        try:
            return parse_message(data, uid=ordinal, uidvalidity=0, received=received)
        except UnreadableMessage as exc:
            log.warning("Gmail mailbox: skipped message %s: %s", message_id, exc)
            return InboundMessage.unreadable(ordinal, 0, str(exc))


def read_inbox(settings: Settings, position: str | None) -> Inbox:
    """The replies job's input from the Gmail mailbox (`World.mailbox` when `[email] transport = "gmail"`)."""
    messages, latest = GmailMailbox(settings.email).read_new(position)
    return Inbox(messages, latest)
