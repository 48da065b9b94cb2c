"""How fast partnerloop hands templated email to an SMTP server over one connection.

Starts a loopback aiosmtpd sink that only counts, renders and sends N messages (default 1,000)
through one SmtpTransport, and prints the rate. Not a test: run it by hand.

    python bench/smtp_throughput.py [--messages 1000]
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, date, datetime
from types import SimpleNamespace
from typing import Any

from aiosmtpd.controller import Controller
from common import REPO, Sink, free_port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))  # runs from a fresh clone, installed or not
    from automations.config import settings_from_dict
    from automations.mail.message import build_message
    from automations.mail.render import EMAIL_TEMPLATES, Renderer, sample_context
    from automations.mail.transport import SmtpTransport

    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        settings = settings_from_dict(
            {
                "clinic": {"name": "Riverside Physical Therapy", "address": "120 Main Street, Springfield, IL 62701",
                           "from_email": "partners@riverside-pt.example", "timezone": "America/Chicago"},
                "email": {"transport": "smtp", "host": "127.0.0.1", "port": port, "security": "none"},
            },
            REPO / "bench" / "bench.toml",
        )
        renderer = Renderer(REPO / "templates")
        templates = [name for name in EMAIL_TEMPLATES if name != "owner_digest"]
        contexts: list[tuple[str, dict[str, Any]]] = []
        for n in range(args.messages):
            template = templates[n % len(templates)]
            context = sample_context(template, settings.clinic, today=date(2026, 11, 27))
            context["partner"] = replace_partner(context["partner"], n)
            contexts.append((template, context))

        render_seconds = 0.0
        send_seconds = 0.0
        started = time.perf_counter()
        with SmtpTransport(settings.email, password="") as transport:
            for n, (template, context) in enumerate(contexts):
                t0 = time.perf_counter()
                rendered = renderer.render(template, context)
                message = build_message(rendered, to_email=f"partner{n}@example.org", to_name=f"Partner {n}",
                                        clinic=settings.clinic, outreach=template.startswith("outreach_"),
                                        now=datetime.now(UTC))
                t1 = time.perf_counter()
                transport.send(message)
                render_seconds += t1 - t0
                send_seconds += time.perf_counter() - t1
        total = time.perf_counter() - started
    finally:
        controller.stop()

    connections = len(sink.peers)
    print(f"smtp: {sink.messages} messages in {total:.2f} s = {sink.messages / total:.1f} msg/s "
          f"over {connections} connection{'s' if connections != 1 else ''}")
    print(f"  render + build: {render_seconds / args.messages * 1000:.2f} ms/message; "
          f"SMTP hand-over: {send_seconds / args.messages * 1000:.2f} ms/message; "
          f"{sink.bytes / max(sink.messages, 1) / 1024:.1f} KiB/message")
    return 0 if sink.messages == args.messages and connections == 1 else 1


def replace_partner(partner: Any, n: int) -> Any:
    """A different partner per message, so nothing is cached between renders."""
    values = dict(vars(partner))
    values.update(business=f"Studio {n}", contact_name=f"Sam Sample{n}", first_name="Sam")
    return SimpleNamespace(**values)


if __name__ == "__main__":
    raise SystemExit(main())
