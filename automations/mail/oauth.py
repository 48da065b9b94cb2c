"""Access tokens for signing in to mail without a password: Google Workspace and Microsoft 365.

Google: the service-account key (domain-wide delegation) acts as the clinic's mailbox through
google-auth; the key file's own `token_uri` is used. Microsoft: the app registered in Entra ID
gets a token for Exchange Online with MSAL's client-credentials flow. Both cache the token and
fetch a new one shortly before it expires; `token(fresh=True)` fetches one at once (after a
server said the one in hand expired).

Every refusal becomes one AuthFailed line an office manager can pass to the administrator:
which setting in which console to change. Neither the key nor the secret is ever printed.
"""

from __future__ import annotations

import base64
import imaplib
import json
import os
import re
import smtplib
from collections.abc import Sequence
from typing import Any, Protocol

import requests

from automations.config import MICROSOFT_AUTHORITY, EmailSettings, GoogleMailSettings, MicrosoftSettings
from automations.errors import ConfigError
from automations.mail.handover import AuthFailed, TemporaryFailure

GMAIL_SEND = "https://www.googleapis.com/auth/gmail.send"
GMAIL_READ = "https://www.googleapis.com/auth/gmail.readonly"
GOOGLE_MAIL = "https://mail.google.com/"  # the only Google scope that opens SMTP and IMAP with XOAUTH2
EXCHANGE_SCOPE = "https://outlook.office365.com/.default"
DELEGATION_PLACE = "Google Admin console > Security > Access and data control > API controls > Domain-wide delegation"


class TokenSource(Protocol):
    """Where a transport or mailbox gets its access token, and which mailbox it signs in as."""

    mailbox: str
    provider: str

    def token(self, fresh: bool = False) -> str: ...


def xoauth2(mailbox: str, token: str) -> bytes:
    """The SASL XOAUTH2 initial response (Google's and Microsoft's format), before base64."""
    return f"user={mailbox}\x01auth=Bearer {token}\x01\x01".encode()


def token_source(email: EmailSettings, scopes: Sequence[str] = (GOOGLE_MAIL,), mailbox: str = "") -> TokenSource:
    """The token source for `[email] auth` (google or microsoft); *mailbox* defaults to the configured user."""
    if email.auth == "google":
        return GoogleTokens(email.google, scopes, mailbox=mailbox)
    if email.auth == "microsoft":
        return MicrosoftTokens(email.microsoft, mailbox or email.username)
    raise ConfigError(f"[email] auth = {email.auth!r} signs in with a password, not a token")


# -- Google ---------------------------------------------------------------------------------------------
class GoogleTokens:
    """Tokens from the service-account key, delegated to the mailbox, for *scopes*."""

    provider = "Google Workspace"

    def __init__(self, google: GoogleMailSettings, scopes: Sequence[str], *, mailbox: str = "",
                 session: requests.Session | None = None) -> None:
        from google.oauth2 import service_account

        self.mailbox = mailbox or google.user
        self.scopes = tuple(scopes)
        self._session = session or requests.Session()
        info = _key_file(google)
        self.client_id = str(info.get("client_id", ""))
        self.client_email = str(info.get("client_email", ""))
        self.key_file = google.credentials
        try:
            self._credentials = service_account.Credentials.from_service_account_info(
                info, scopes=list(self.scopes), subject=self.mailbox)
        except (ValueError, KeyError) as exc:
            raise ConfigError(f"[email.google] credentials: {google.credentials} is not a service-account key "
                              f"({_one_line(str(exc))[:120]}); download a JSON key for the service account") from None

    def token(self, fresh: bool = False) -> str:
        from google.auth.exceptions import RefreshError, TransportError
        from google.auth.transport.requests import Request

        if fresh or not self._credentials.valid:
            try:
                self._credentials.refresh(Request(self._session))
            except RefreshError as exc:
                raise AuthFailed(self.refusal(str(exc))) from None
            except TransportError as exc:
                raise TemporaryFailure(f"cannot reach Google's sign-in ({_one_line(str(exc))[:120]}); the next run "
                                       "will try again") from None
        return str(self._credentials.token)

    def refusal(self, text: str) -> str:
        """One line for the administrator from google-auth's RefreshError text."""
        who = f"the service account {self.client_email} (client ID {self.client_id})"
        if "unauthorized_client" in text:
            return (f"Google Workspace does not let {who} act as {self.mailbox} with scope(s) "
                    f"{', '.join(self.scopes)}: an administrator adds them for client ID {self.client_id} in "
                    f"{DELEGATION_PLACE}")
        if "Invalid email or User ID" in text or "invalid_email" in text.lower():
            return f"Google Workspace has no mailbox {self.mailbox}; check [email.google] user"
        if "Invalid JWT Signature" in text or "account not found" in text.lower():
            return (f"Google refused the key in {self.key_file} (it was deleted or disabled): create a new key for "
                    f"{self.client_email} and point [email.google] credentials at it")
        return f"Google refused to sign in {who} as {self.mailbox} ({_one_line(text)[:160]})"


def _key_file(google: GoogleMailSettings) -> dict[str, Any]:
    path = google.credentials
    if path is None:
        raise ConfigError("[email.google] credentials: the service-account key file is needed to sign in to "
                          "Google Workspace mail (or set [sheet] credentials)")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"[email.google] credentials: {path} not found") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"[email.google] credentials: cannot read {path} as a JSON key ({type(exc).__name__})") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise ConfigError(f"[email.google] credentials: {path} is not a service-account key file")
    return info


# -- Microsoft ------------------------------------------------------------------------------------------
MICROSOFT_FIXES = {
    "AADSTS7000215": "the client secret in {env} is wrong: create a new client secret for the app and set {env}",
    "AADSTS7000222": "the client secret in {env} has expired: create a new client secret for the app and set {env}",
    "AADSTS700016": "no app with client ID {client_id} in tenant {tenant}: check [email.microsoft] client_id and "
                    "tenant",
    "AADSTS90002": "no tenant {tenant}: check [email.microsoft] tenant (the directory (tenant) ID)",
    "AADSTS500011": "Exchange Online is not available to the app in tenant {tenant}: grant admin consent for "
                    "Office 365 Exchange Online permissions",
    "AADSTS65001": "the app has no admin consent: an administrator grants admin consent on the app's API "
                   "permissions",
}


class MicrosoftTokens:
    """Tokens for Exchange Online (SMTP and IMAP) from the client-credentials flow of the registered app."""

    provider = "Microsoft 365"

    def __init__(self, microsoft: MicrosoftSettings, mailbox: str, *, http_client: Any = None,
                 **app_options: Any) -> None:
        import msal

        self.mailbox = mailbox
        self.settings = microsoft
        secret = os.environ.get(microsoft.client_secret_env) if microsoft.client_secret_env else None
        if not secret:
            raise ConfigError(f"[email.microsoft] client_secret_env names {microsoft.client_secret_env or '(nothing)'}, "
                              "but that environment variable is not set")
        if microsoft.authority != MICROSOFT_AUTHORITY:  # a national cloud or a private endpoint: trusted as given
            app_options.setdefault("instance_discovery", False)
            app_options.setdefault("validate_authority", False)
        try:
            self._app = msal.ConfidentialClientApplication(
                microsoft.client_id, client_credential=secret, authority=f"{microsoft.authority}/{microsoft.tenant}",
                http_client=http_client, **app_options)
        except ValueError as exc:
            raise ConfigError(f"[email.microsoft] authority or tenant: {_one_line(str(exc))[:160]}") from None
        except requests.RequestException as exc:
            raise TemporaryFailure(f"cannot reach Microsoft's sign-in ({_one_line(str(exc))[:120]}); the next run "
                                   "will try again") from None

    def token(self, fresh: bool = False) -> str:
        if fresh:  # the server said the cached token no longer works: drop it so MSAL fetches another
            cache = self._app.token_cache
            for entry in list(cache.search(cache.CredentialType.ACCESS_TOKEN)):
                cache.remove_at(entry)
        try:
            result = self._app.acquire_token_for_client(scopes=[EXCHANGE_SCOPE])
        except requests.RequestException as exc:
            raise TemporaryFailure(f"cannot reach Microsoft's sign-in ({_one_line(str(exc))[:120]}); the next run "
                                   "will try again") from None
        if "access_token" in result:
            return str(result["access_token"])
        raise AuthFailed(self.refusal(str(result.get("error", "")), str(result.get("error_description", ""))))

    def refusal(self, error: str, description: str) -> str:
        """One line for the administrator from Microsoft's error code (AADSTS...)."""
        found = re.search(r"AADSTS\d+", description)
        code = found.group(0) if found else ""
        ms = self.settings
        fix = MICROSOFT_FIXES.get(code)
        if fix:
            return "Microsoft 365 refused the sign-in: " + fix.format(env=ms.client_secret_env, client_id=ms.client_id,
                                                                      tenant=ms.tenant) + f" ({code})"
        return f"Microsoft 365 refused the sign-in of app {ms.client_id} ({error}: {_one_line(description)[:160]})"


def _one_line(text: str) -> str:
    return " ".join(text.split())


# -- SASL XOAUTH2 for SMTP and IMAP -----------------------------------------------------------------------
def smtp_sign_in(smtp: smtplib.SMTP, tokens: TokenSource, where: str) -> None:
    """AUTH XOAUTH2 as the mailbox; a refused token is fetched again once (it may have expired early)."""
    smtp.ehlo_or_helo_if_needed()
    if "XOAUTH2" not in smtp.esmtp_features.get("auth", "").upper().split():
        raise AuthFailed(f"{where} does not offer AUTH XOAUTH2; check [email] host, port and security")
    for attempt in range(2):
        token = tokens.token(fresh=attempt > 0)
        reply = base64.b64encode(xoauth2(tokens.mailbox, token)).decode("ascii")
        code, _text = smtp.docmd("AUTH", "XOAUTH2 " + reply)
        if code == 334:  # the refusal's details come as a challenge; an empty line ends the exchange
            code, _text = smtp.docmd("")
        if code == 235:
            return
    raise AuthFailed(f"{where} refused {tokens.mailbox}'s token: {mailbox_refusal(tokens)}")


def imap_sign_in(imap: imaplib.IMAP4, tokens: TokenSource, where: str) -> None:
    """AUTHENTICATE XOAUTH2 as the mailbox; a refused token is fetched again once."""
    for attempt in range(2):
        token = tokens.token(fresh=attempt > 0)
        first = [True]

        def respond(_challenge: bytes, first: list[bool] = first, token: str = token) -> bytes:
            if first[0]:
                first[0] = False
                return xoauth2(tokens.mailbox, token)
            return b""  # the refusal's details came as a challenge: answer with an empty line

        try:
            imap.authenticate("XOAUTH2", respond)
            return
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error:
            continue
    raise AuthFailed(f"IMAP {where} refused {tokens.mailbox}'s token: {mailbox_refusal(tokens)}")


def mailbox_refusal(tokens: TokenSource) -> str:
    """What the administrator checks when the mail server refuses a token the provider issued."""
    if tokens.provider == "Microsoft 365":
        return ("an Exchange Online administrator registers the app's service principal (New-ServicePrincipal) "
                "and gives it the mailbox (Add-MailboxPermission -AccessRights FullAccess); see README, Mail sign-in")
    return (f"the service account needs {GOOGLE_MAIL} in domain-wide delegation, and IMAP must be on for the "
            "mailbox in Google Workspace")
