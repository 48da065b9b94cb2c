"""Email for partnerloop: render a template, build the message, hand it to a transport.

The send ledger (at-most-once bookkeeping) lives in `automations.mail.ledger`.
"""

from automations.mail.message import build_message, unsubscribe_mailto
from automations.mail.render import (
    EMAIL_TEMPLATES,
    Rendered,
    Renderer,
    RenderError,
    TemplateProblem,
)
from automations.mail.transport import (
    AuthFailed,
    OutboxTransport,
    OutcomeUnknown,
    RecipientRefused,
    SmtpTransport,
    TemporaryFailure,
    Transport,
    make_transport,
)

__all__ = [
    "EMAIL_TEMPLATES",
    "AuthFailed",
    "OutboxTransport",
    "OutcomeUnknown",
    "RecipientRefused",
    "RenderError",
    "Rendered",
    "Renderer",
    "SmtpTransport",
    "TemplateProblem",
    "TemporaryFailure",
    "Transport",
    "build_message",
    "make_transport",
    "unsubscribe_mailto",
]
