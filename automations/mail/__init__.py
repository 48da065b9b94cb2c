"""Email for partnerloop, one module per concern (imported by name, so that importing one loads no other):

- `render`: templates to subject, HTML and text; `message`: the RFC 5322 message;
- `transport`: handing messages over (outbox folder, SMTP); `ledger`: the send ledger (SQLite);
- `inbound`: parsing what comes back (pure); `imap`: reading the clinic's mailbox.
"""
