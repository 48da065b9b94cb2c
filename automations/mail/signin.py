"""`partnerloop check --mail`: sign in to the configured transport and mailbox, send nothing, say what works.

Each step either adds a line of what partnerloop can do ("can send as ... via Gmail API") or
raises the one PartnerloopError the administrator must act on. For Google, every scope is asked
for on its own first, so a refusal names exactly the scope missing from domain-wide delegation.
"""

from __future__ import annotations

from collections.abc import Sequence

from automations.config import Settings
from automations.mail.oauth import GMAIL_READ, GMAIL_SEND, GOOGLE_MAIL, GoogleTokens


def check_mail(settings: Settings) -> list[str]:
    """Lines of what partnerloop can do with the configured mail; raises the one thing to fix."""
    email = settings.email
    lines: list[str] = []
    if email.transport == "gmail":
        from automations.mail.gmail import GmailMailbox, GmailTransport

        _google_scopes(settings, (GMAIL_SEND, GMAIL_READ))
        transport = GmailTransport(email)
        transport.open()
        lines.append(f"can send as {transport.api.mailbox if transport.api else email.google.user} via Gmail API")
        profile = GmailMailbox(email).api.call("GET", "/profile")
        lines.append(f"can read the inbox of {profile.get('emailAddress', email.google.user)} via Gmail API "
                     "(replies, and settling unknown sends)")
    elif email.transport == "smtp":
        from automations.mail.transport import SmtpTransport

        if email.auth == "google":
            _google_scopes(settings, (GOOGLE_MAIL,))
        with SmtpTransport(email) as smtp:
            signed_in = f", signed in as {email.username} ({_how(email.auth)})" if email.username else ""
            lines.append(f"can send as {settings.clinic.from_email} via SMTP {smtp.where}{signed_in}")
    else:
        lines.append(f"writes each email as an .eml file in {email.outbox_dir}; nothing is sent")
    if email.imap.host:
        from automations.mail.imap import can_read

        lines.append(can_read(settings))
    elif email.transport != "gmail":
        lines.append("no mailbox to read: set [email.imap] for the replies job")
    return lines


def _google_scopes(settings: Settings, scopes: Sequence[str]) -> None:
    """Ask Google for each scope alone; AuthFailed names the first one delegation does not grant."""
    user = settings.email.username if settings.email.transport == "smtp" else ""
    for scope in scopes:
        GoogleTokens(settings.email.google, [scope], mailbox=user).token()


def _how(auth: str) -> str:
    return {"google": "Google Workspace token", "microsoft": "Microsoft 365 token"}.get(auth, "password")
