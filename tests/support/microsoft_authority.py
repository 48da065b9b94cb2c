"""Microsoft's identity platform (Entra ID) on 127.0.0.1 over HTTPS, for MSAL's client-credentials flow.

MSAL refuses an http:// authority, so this server speaks TLS with a trustme certificate; a test
gives MSAL a `requests.Session` that trusts `ca_file` and ignores the environment
(`session()`). It answers `{authority}/{tenant}/v2.0/.well-known/openid-configuration` and the
token POST, checking the tenant, the app's client ID and secret, and the scope
`https://outlook.office365.com/.default`, with Microsoft's AADSTS error codes. Issued tokens go
in the shared `TokenBook`, carrying the mailboxes the app was given in Exchange Online
(`Add-MailboxPermission`), which the local SMTP server checks.
"""

from __future__ import annotations

import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests
import trustme

from tests.support.google_token_server import TokenBook
from tests.support.local_http import HOST, JsonHandler, LocalServer

EXCHANGE = "https://outlook.office365.com/.default"


@dataclass
class App:
    """An app registration: its secret and the mailboxes Exchange Online lets it open."""

    secret: str
    mailboxes: set[str] = field(default_factory=set)


class MicrosoftAuthority(LocalServer):
    """The local authority; see the module docstring. Use as a context manager."""

    def __init__(self, book: TokenBook | None = None, tenant: str = "contoso-tenant-id", lifetime: int = 3599) -> None:
        self.book = book or TokenBook()
        self.tenant = tenant
        self.lifetime = lifetime
        self.apps: dict[str, App] = {}
        self.token_requests: list[dict[str, str]] = []
        self.ca = trustme.CA()
        self._folder = Path(tempfile.mkdtemp(prefix="partnerloop-msft-"))
        self.ca_file = self._folder / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(HOST, "localhost").configure_cert(context)
        return context

    def session(self) -> requests.Session:
        """What MSAL is given as http_client: trusts this authority's CA, not the machine's environment."""
        session = requests.Session()
        session.trust_env = False
        session.verify = str(self.ca_file)
        return session

    def register(self, client_id: str, secret: str, *mailboxes: str) -> App:
        """An app registration with admin consent, its service principal and mailbox permissions."""
        app = self.apps[client_id] = App(secret, {m.lower() for m in mailboxes})
        return app

    # -- the endpoints ---------------------------------------------------------------------------------
    def discovery(self, tenant: str) -> tuple[int, dict[str, Any]]:
        if tenant != self.tenant:
            return 400, _error("invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
        base = f"{self.url}/{tenant}"
        return 200, {"token_endpoint": f"{base}/oauth2/v2.0/token",
                     "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                     "issuer": f"{base}/v2.0", "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                     "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"]}

    def token(self, tenant: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.token_requests.append({k: v for k, v in form.items() if k != "client_secret"})
        if form.get("grant_type") != "client_credentials":
            return 400, _error("unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        app = self.apps.get(form.get("client_id", ""))
        if tenant != self.tenant or app is None:
            return 400, _error("unauthorized_client", 700016,
                               f"Application with identifier '{form.get('client_id')}' was not found in the "
                               f"directory '{tenant}'.")
        if form.get("client_secret") != app.secret:
            return 401, _error("invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being "
                               "sent in the request is the client secret value, not the client secret ID.")
        if form.get("scope", "").split() != [EXCHANGE]:
            return 400, _error("invalid_scope", 1002012, f"The provided value for scope {form.get('scope')} is "
                               "not valid. Client credential flows must have a scope value with /.default.")
        token = self.book.issue(form["client_id"], frozenset([EXCHANGE]), self.lifetime, "microsoft",
                                frozenset(app.mailboxes))
        return 200, {"token_type": "Bearer", "expires_in": self.lifetime, "ext_expires_in": self.lifetime,
                     "access_token": token}


def _error(error: str, code: int, text: str) -> dict[str, Any]:
    return {"error": error, "error_description": f"AADSTS{code}: {text} Trace ID: 0000 Correlation ID: 0000",
            "error_codes": [code], "timestamp": "2026-12-01 09:00:00Z"}


class _Handler(JsonHandler):
    owner: MicrosoftAuthority

    def do_GET(self) -> None:
        parts = urlparse(self.path).path.strip("/").split("/")
        if parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
            self.reply(*self.owner.discovery(parts[0]))
        else:
            self.reply(404, {"error": "not_found"})

    def do_POST(self) -> None:
        form = self.form()
        parts = urlparse(self.path).path.strip("/").split("/")
        if parts[1:] == ["oauth2", "v2.0", "token"]:
            self.reply(*self.owner.token(parts[0], form))
        else:
            self.reply(404, {"error": "not_found"})


MicrosoftAuthority.handler = _Handler
