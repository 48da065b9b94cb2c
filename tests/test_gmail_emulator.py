"""The local Google stand-ins speak like Google: Google's own client libraries, unmodified, work against them."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from google.auth.exceptions import RefreshError
from google.oauth2 import service_account
from googleapiclient.discovery import build_from_document
from googleapiclient.errors import HttpError

from tests.support.gmail_emulator import GmailEmulator, load_discovery, schema_problems
from tests.support.google_token_server import GoogleTokenServer

USER = "partners@riverside-pt.example"
SEND = "https://www.googleapis.com/auth/gmail.send"
READ = "https://www.googleapis.com/auth/gmail.readonly"


@pytest.fixture
def google() -> Iterator[tuple[GoogleTokenServer, GmailEmulator]]:
    with GoogleTokenServer() as tokens, GmailEmulator(tokens.book) as gmail:
        yield tokens, gmail
        assert gmail.violations == []


def gmail_client(tokens: GoogleTokenServer, gmail: GmailEmulator, *scopes: str) -> Any:
    """google-api-python-client built from the published discovery document, pointed at the emulator."""
    key = tokens.new_key()
    tokens.grant(key, USER, SEND, READ)
    credentials = service_account.Credentials.from_service_account_info(key, scopes=list(scopes), subject=USER)
    return build_from_document(load_discovery(), credentials=credentials,
                               client_options={"api_endpoint": gmail.url + "/"})


def message(to: str = "run@club.example", message_id: str = "<r1@riverside-pt.example>") -> bytes:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"], m["Message-ID"] = USER, to, "Hello", message_id
    m.set_content("Hi")
    return m.as_bytes()


def test_googles_client_sends_lists_gets_and_follows_history(google: tuple[GoogleTokenServer, GmailEmulator]) -> None:
    tokens, gmail = google
    users = gmail_client(tokens, gmail, SEND, READ).users()
    start = users.getProfile(userId="me").execute()["historyId"]
    raw = base64.urlsafe_b64encode(message()).decode()
    sent = users.messages().send(userId="me", body={"raw": raw}).execute()
    assert sent["labelIds"] == ["SENT"]
    found = users.messages().list(userId="me", q="rfc822msgid:r1@riverside-pt.example").execute()
    assert [m["id"] for m in found["messages"]] == [sent["id"]]
    assert users.messages().list(userId="me", q="rfc822msgid:<other@x.example>").execute()["resultSizeEstimate"] == 0
    got = users.messages().get(userId="me", id=sent["id"], format="raw").execute()
    assert base64.urlsafe_b64decode(got["raw"]) == message()
    meta = users.messages().get(userId="me", id=sent["id"], format="metadata", metadataHeaders=["Subject"]).execute()
    assert meta["payload"]["headers"] == [{"name": "Subject", "value": "Hello"}]
    reply = gmail.deliver(USER, message(to=USER, message_id="<reply@club.example>"))
    history = users.history().list(userId="me", startHistoryId=start, labelId="INBOX",
                                   historyTypes="messageAdded").execute()
    assert [h["messagesAdded"][0]["message"]["id"] for h in history["history"]] == [reply.id]
    gmail.expire_history(USER)
    with pytest.raises(HttpError) as expired:
        users.history().list(userId="me", startHistoryId=start).execute()
    assert expired.value.resp.status == 404


def test_a_scope_the_method_does_not_accept_gets_403(google: tuple[GoogleTokenServer, GmailEmulator]) -> None:
    tokens, gmail = google
    users = gmail_client(tokens, gmail, SEND).users()  # gmail.send cannot read the profile
    with pytest.raises(HttpError) as refused:
        users.getProfile(userId="me").execute()
    assert refused.value.resp.status == 403 and refused.value.error_details[0]["reason"] == "insufficientPermissions"


def test_the_token_server_refuses_a_scope_not_delegated_like_google(tmp_path: Path) -> None:
    with GoogleTokenServer() as tokens:
        key = tokens.new_key()
        tokens.grant(key, USER, SEND)
        from google.auth.transport.requests import Request

        ok = service_account.Credentials.from_service_account_info(key, scopes=[SEND], subject=USER)
        ok.refresh(Request())
        assert tokens.book.check(ok.token) is not None and tokens.requests[-1]["sub"] == USER
        wider = service_account.Credentials.from_service_account_info(key, scopes=[SEND, READ], subject=USER)
        with pytest.raises(RefreshError, match="unauthorized_client"):
            wider.refresh(Request())
        other = tokens.new_key()  # another key's signature does not verify against the first key's id
        forged = dict(other, private_key_id=key["private_key_id"], client_email=key["client_email"])
        with pytest.raises(RefreshError, match="Invalid JWT Signature"):
            service_account.Credentials.from_service_account_info(forged, scopes=[SEND], subject=USER).refresh(Request())


def test_every_emulated_answer_is_in_the_published_schema(google: tuple[GoogleTokenServer, GmailEmulator]) -> None:
    """Fails if the emulator answers with a property Gmail's discovery document does not have."""
    tokens, gmail = google
    users = gmail_client(tokens, gmail, SEND, READ).users()
    sent = users.messages().send(userId="me", body={"raw": base64.urlsafe_b64encode(message()).decode()}).execute()
    for form in ("raw", "metadata", "minimal", "full"):
        users.messages().get(userId="me", id=sent["id"], format=form).execute()
    users.messages().list(userId="me", labelIds=["SENT"], maxResults=1).execute()
    users.history().list(userId="me", startHistoryId="1000").execute()
    users.getProfile(userId="me").execute()
    assert gmail.violations == []
    assert {"gmail.users.messages.send", "gmail.users.messages.get", "gmail.users.messages.list",
            "gmail.users.history.list", "gmail.users.getProfile"} <= set(gmail.calls)


def test_the_schema_check_catches_an_unknown_property_or_a_wrong_type() -> None:
    doc = load_discovery()
    assert schema_problems(doc, {"$ref": "Message"}, {"id": "1", "labelIds": ["SENT"]}, "m") == []
    assert schema_problems(doc, {"$ref": "Message"}, {"id": "1", "messageId": "x"}, "m") == [
        "m.messageId: not a property of Message"]
    assert schema_problems(doc, {"$ref": "Profile"}, {"historyId": 12}, "p") == ["p.historyId: expected a string, got int"]
    assert schema_problems(doc, {"$ref": "ListHistoryResponse"}, {"history": [{"id": "x1"}]}, "h") == [
        "h.history[0].id: expected a uint64 in a string"]


def test_a_request_off_the_published_contract_is_refused_and_recorded() -> None:
    with GoogleTokenServer() as tokens, GmailEmulator(tokens.book) as gmail:
        import requests

        bad = requests.get(f"{gmail.url}/gmail/v1/users/me/history", params={"since": "5"}, timeout=5)
        assert bad.status_code == 400
        assert any("unknown parameter 'since'" in v for v in gmail.violations)
        assert any("required parameter 'startHistoryId' missing" in v for v in gmail.violations)
