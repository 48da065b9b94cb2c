"""A real IMAP server on 127.0.0.1 for tests: Dovecot with throwaway mailboxes in a temporary folder.

`ImapServer` writes its own Dovecot config (no system paths but the binary), picks two free ports
(plain with STARTTLS, and implicit TLS with a trustme certificate), runs `dovecot -F` in the
foreground and stops it on exit. Any username logs in with `PASSWORD` and gets its own empty
maildir, so each test can use a fresh mailbox on one server. Messages are put in with APPEND.

With `introspection_url` (the local Google token server's ``/introspect``) Dovecot also takes
AUTHENTICATE XOAUTH2 through an oauth2 passdb that asks that endpoint whether a bearer token is
active and whose mailbox it opens (`email`); password logins keep working beside it.

Without Dovecot installed, the tests that need it skip with the reason, or fail when CI=true
(`.ci/run` installs it; `apt-get install dovecot-imapd` does it by hand).
"""

from __future__ import annotations

import imaplib
import itertools
import os
import pwd
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest
import trustme

HOST = "127.0.0.1"
PASSWORD = "imap-test-secret"
PASSWORD_ENV = "PARTNERLOOP_TEST_IMAP_PASSWORD"  # the variable tests name in `[email.imap] password_env`
_users = itertools.count(1)


def dovecot_binary() -> str:
    """The dovecot binary, or skip (fail under CI=true) with how to install it."""
    found = shutil.which("dovecot") or next((p for p in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot")
                                             if os.access(p, os.X_OK)), None)
    if found:
        return found
    reason = ("the IMAP tests need Dovecot (not installed): run `apt-get install dovecot-imapd` "
              "(.ci/run does it)")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _user(name: str) -> str:
    try:
        pwd.getpwnam(name)
        return name
    except KeyError:
        return ""


class ImapServer:
    """Dovecot on 127.0.0.1: `port` speaks plain IMAP and offers STARTTLS, `ssl_port` is IMAP over TLS."""

    def __init__(self, introspection_url: str = "") -> None:
        self.introspection_url = introspection_url
        self.host = HOST
        self.port = 0
        self.ssl_port = 0
        self.dir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.ca = trustme.CA()

    # -- lifecycle --------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        binary = dovecot_binary()
        # Under /tmp, not pytest's tmp_path: Dovecot's unprivileged processes must reach these folders.
        self.dir = Path(tempfile.mkdtemp(prefix="partnerloop-imap-"))
        self.dir.chmod(0o755)
        self.port, self.ssl_port = _free_port(), _free_port()
        config = self._write_config()
        self.process = subprocess.Popen([binary, "-F", "-c", str(config)], stdout=subprocess.DEVNULL,
                                        stderr=(self.dir / "stderr.log").open("wb"))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                client = imaplib.IMAP4(self.host, self.port, timeout=2)
                client.logout()
                return
            except (OSError, imaplib.IMAP4.error):
                time.sleep(0.05)
        log = self.log()
        self.stop()
        pytest.fail(f"Dovecot did not start on {self.host}:{self.port}:\n{log[-2000:]}", pytrace=False)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def log(self) -> str:
        """Dovecot's log and anything it printed before logging started."""
        assert self.dir is not None
        return "".join(p.read_text(errors="replace") for p in (self.dir / "stderr.log", self.dir / "dovecot.log")
                       if p.exists())

    def _write_config(self) -> Path:
        assert self.dir is not None
        root = self.dir
        cert = self.ca.issue_cert(HOST, "localhost")
        cert.private_key_pem.write_to_path(str(root / "key.pem"))
        cert.cert_chain_pems[0].write_to_path(str(root / "cert.pem"))
        mail = root / "mail"
        mail.mkdir()
        if os.geteuid() == 0:
            # Dovecot refuses to serve mail as root and to run its login process as root.
            mail_user = _user("nobody") or _user("dovenull")
            login_user = _user("dovenull") or mail_user
            internal_user = _user("dovecot") or mail_user
            entry = pwd.getpwnam(mail_user)
            os.chown(mail, entry.pw_uid, entry.pw_gid)
            mail_group = f"gid={entry.pw_gid}"
        else:  # an unprivileged Dovecot runs every process as the current user
            mail_user = login_user = internal_user = pwd.getpwuid(os.getuid()).pw_name
            mail_group = f"gid={os.getgid()}"
        oauth_mechanisms, oauth_passdb = "", ""
        if self.introspection_url:
            (root / "oauth2.conf.ext").write_text(
                f"introspection_mode = post\nintrospection_url = {self.introspection_url}\n"
                "force_introspection = yes\nusername_attribute = email\nactive_attribute = active\n"
                "active_value = true\n")
            oauth_mechanisms = " xoauth2 oauthbearer"
            oauth_passdb = (f"passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
                            f"  args = {root}/oauth2.conf.ext\n}}\n")
        config = root / "dovecot.conf"
        config.write_text(f"""\
protocols = imap
listen = {HOST}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
ssl = yes
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login{oauth_mechanisms}
auth_failure_delay = 0
mail_location = maildir:{mail}/%u
default_internal_user = {internal_user}
default_login_user = {login_user}
{oauth_passdb}passdb {{
  driver = static
  args = password={PASSWORD}
}}
userdb {{
  driver = static
  args = uid={mail_user} {mail_group} home={mail}/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = {HOST}
    port = {self.port}
  }}
  inet_listener imaps {{
    address = {HOST}
    port = {self.ssl_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
""")
        return config

    # -- mailboxes ------------------------------------------------------------------------------------
    def new_user(self) -> str:
        """A username with a fresh, empty mailbox."""
        return f"clinic{next(_users)}"

    def client_ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context

    def connect(self, user: str) -> imaplib.IMAP4:
        client = imaplib.IMAP4(self.host, self.port, timeout=10)
        client.login(user, PASSWORD)
        return client

    def deliver(self, user: str, message: EmailMessage | bytes, folder: str = "INBOX", flags: str = "") -> int:
        """APPEND one message to the user's folder (created if missing); returns its UID."""
        raw = message if isinstance(message, bytes) else message.as_bytes()
        client = self.connect(user)
        try:
            if folder != "INBOX":
                client.create(folder)  # NO when it exists already: fine
            typ, data = client.append(folder, f"({flags})" if flags else None, None, raw)
            assert typ == "OK", data
            found = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
            assert found, data
            return int(found.group(1))
        finally:
            client.logout()

    def flags(self, user: str, folder: str = "INBOX") -> dict[int, set[str]]:
        """UID -> flags of every message in the folder (read without changing any)."""
        client = self.connect(user)
        try:
            client.select(folder, readonly=True)
            _typ, data = client.uid("FETCH", "1:*", "(FLAGS)")
            out: dict[int, set[str]] = {}
            for line in data:
                if isinstance(line, bytes):
                    found = re.search(rb"UID (\d+) FLAGS \(([^)]*)\)", line) or re.search(
                        rb"FLAGS \(([^)]*)\) UID (\d+)", line)
                    if found and found.re.pattern.startswith(b"UID"):
                        out[int(found.group(1))] = set(found.group(2).decode().split())
                    elif found:
                        out[int(found.group(2))] = set(found.group(1).decode().split())
            return out
        finally:
            client.logout()

    def count(self, user: str, folder: str = "INBOX") -> int:
        client = self.connect(user)
        try:
            _typ, data = client.select(folder, readonly=True)
            return int(data[0] or 0)
        finally:
            client.logout()

    def recreate(self, user: str, folder: str) -> None:
        """Delete and create the folder again: the server gives it a new UIDVALIDITY and starts UIDs over."""
        client = self.connect(user)
        try:
            client.delete(folder)
            typ, data = client.create(folder)
            assert typ == "OK", data
        finally:
            client.logout()


def imap_section(server: ImapServer, user: str, **overrides: Any) -> dict[str, Any]:
    """The `[email.imap]` config section (as a dict) reading *user*'s INBOX on *server* over plain IMAP."""
    return {"host": server.host, "port": server.port, "security": "none", "username": user,
            "password_env": PASSWORD_ENV, **overrides}
