"""The `partnerloop` command line: each command calls one library function and prints its result.

Exit status: 0 when the command did its work, 1 when `check` found problems, 2 when it could not
run (bad config, spreadsheet or mail server unreachable, another run in progress) with one line
saying why.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Sequence

from automations.clock import parse_now
from automations.config import Settings, load_settings
from automations.errors import ConfigError, PartnerloopError, where

Command = Callable[[argparse.Namespace, Settings], int]


def say(line: str = "") -> None:
    print(line, flush=True)


def now_from(args: argparse.Namespace, settings: Settings) -> datetime:
    tz = settings.clinic.tz
    if getattr(args, "now", None):
        try:
            return parse_now(args.now, tz, settings.email.send_window)
        except ValueError as exc:
            raise PartnerloopError(str(exc)) from None
    return datetime.now(tz)


def cmd_init(args: argparse.Namespace, settings: Settings) -> int:
    from automations.check import init_sheet
    from automations.demo import demo_rows
    from automations.sheets import open_backend

    demo = demo_rows(now_from(args, settings).date()) if args.demo else None
    changes = init_sheet(open_backend(settings), settings, demo)
    for change in changes:
        say(f"  {change}")
    say(f"init: {len(changes)} change(s) to {settings.sheet.path if settings.sheet.backend == 'xlsx' else settings.sheet.key}"
        if changes else "init: nothing to do; every tab and column is there")
    return 0


def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    from automations.check import check_sheet
    from automations.mail.render import TemplateProblem, renderer_for
    from automations.model import Problem
    from automations.sheets import open_backend

    if getattr(args, "mail", False):
        return cmd_check_mail(settings)

    today = now_from(args, settings).date()
    result = check_sheet(open_backend(settings), settings)
    template_problems = []
    try:
        renderer_for(settings).check_all(settings.clinic, today)
    except TemplateProblem as exc:
        template_problems.append(f"Templates: {exc}")
    for line in result.layout:
        say(line)
    if result.layout:
        say(f"check: {len(result.layout)} missing tab(s) or column(s); rows are checked once they are back")
        return 1
    patients = settings.sheet.title("referrals")  # rows with patient data: their cells are not printed

    def printed(p: Problem) -> str:
        return p.redacted() if p.ref.tab == patients else str(p)

    for line in [*template_problems, *result.migration, *map(printed, result.printed_problems())]:
        say(line)
    for warning in result.warnings:  # worth a look; they do not fail the check
        say("warning: " + printed(warning))
    for lost in result.lost:
        say(f"not written: {lost}")
    warned = f"; {len(result.warnings)} warning(s) above (they do not fail the check)" if result.warnings else ""
    if template_problems and not result.problems:
        say("check: the templates need fixing (see above); the rows are fine" + warned)
        return 1
    if result.problems:
        say(f"check: {len(result.problems)} problem(s) in {result.rows} row(s); each is also in that row's "
            f"Automation status. Fix the cells and run `partnerloop check` again{warned}.")
        return 1
    say(f"check: {result.rows} row(s), no problems{warned}")
    return 0


def cmd_check_mail(settings: Settings) -> int:
    """`check --mail`: sign in, send nothing, print what works; a refusal is the one line main() prints."""
    from automations.mail.signin import check_mail

    for line in check_mail(settings):
        say(line)
    say("check --mail: mail sign-in works; nothing was sent")
    return 0


def make_world(settings: Settings, args: argparse.Namespace | None = None) -> Any:
    """The production world: the configured backend and transport, the ledger, the real (or --now) clock."""
    from automations.executor import World
    from automations.mail.ledger import Ledger
    from automations.sheets import open_backend

    fixed = now_from(args, settings) if args is not None and getattr(args, "now", None) else None
    start = datetime.now(settings.clinic.tz)

    def clock() -> datetime:
        # --now T behaves exactly as a run at T: time moves on from T as it does from now
        return fixed + (datetime.now(settings.clinic.tz) - start) if fixed else datetime.now(settings.clinic.tz)

    return World(settings=settings, backend=open_backend(settings), ledger=Ledger.in_state_dir(settings.state_dir),
                 clock=clock, progress=progress_printer())


def progress_printer() -> Callable[[str], None]:
    """Progress on a terminal (one line, rewritten); plain log lines without one."""
    if sys.stderr.isatty():
        def show(line: str) -> None:
            sys.stderr.write("\r\033[K" + line[:100])
            sys.stderr.flush()
        return show
    return lambda line: logging.getLogger("partnerloop").info(line)


def end_progress() -> None:
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()


def job_names(args: argparse.Namespace, settings: Settings) -> list[str]:
    """The jobs to run: those named, or --all (the replies job only when the mailbox is configured)."""
    from automations.jobs import JOBS
    from automations.mail.mailbox import configured

    if args.all:
        return [job for job in JOBS if job != "replies" or configured(settings)]
    if not args.jobs:
        raise PartnerloopError(f"name a job or use --all; jobs are: {', '.join(JOBS)}")
    if "replies" in args.jobs and not configured(settings):
        raise ConfigError(f"{settings.source}: [email.imap] host is not set: the replies job reads the clinic's "
                          "mailbox; set host, port, security, username and password_env there (or use "
                          "[email] transport = \"gmail\")")
    return list(dict.fromkeys(args.jobs))


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import replace

    from automations.executor import run_jobs
    from automations.model import hide_values

    stopped: list[int] = []  # the signal that asked partnerloop to stop, once one has

    def stop(signum: int, _frame: Any) -> None:
        if not stopped:
            logging.getLogger("partnerloop").warning("stopping: the email in hand finishes, the rest is held, "
                                                     "everything sent is written back")
        stopped.append(signum)

    world = replace(make_world(settings, args), stop=lambda: bool(stopped))
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    jobs = job_names(args, settings)
    try:
        report = run_jobs(world, jobs, dry_run=args.dry_run, limit=args.limit)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        end_progress()
    if args.dry_run:
        for outcome in report.outcomes:
            if outcome.result == "already":
                continue
            e = outcome.email
            to = e.log_to if e.recipient == "patient" else e.to_email
            say(f"  would {'send' if outcome.result == 'dry-run' else outcome.result}: {e.job} {e.row.row_id} "
                f"{e.template} to {to}" + (f" ({outcome.detail})" if outcome.result != "dry-run" else ""))
        patients = settings.sheet.title("referrals")  # its cells are not printed (as `check` does)
        for write in report.writes:
            cells = ", ".join(f"{k} = {hide_values(str(v)) if write.tab == patients else v}"
                              for k, v in write.values.items())
            say(f"  would write {write.tab} {write.row_id}: {cells}")
    for line in report.summary():
        say(line)
    if stopped:
        name = signal.Signals(stopped[0]).name
        say(f"run: stopped by {name}; what was not sent is held for the next run")
        return 128 + stopped[0]  # as a shell reports a command a signal stopped: 130 for Ctrl-C, 143 for SIGTERM
    return 2 if report.fatal else 0


def cmd_preview(args: argparse.Namespace, settings: Settings) -> int:
    from automations.preview import preview

    world = make_world(settings, args)
    shown, notes = preview(world, args.job, args.id)
    for block in shown:
        say(block)
    if not shown:
        for line in notes:
            say(line)
        say(f"preview: {args.job} has nothing to send" + (f" for {args.id}" if args.id else "") + " now")
    return 0


def cmd_schedule(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import replace

    from automations.executor import run_jobs
    from automations.scheduler import Daemon

    def run_job(job: str, stopping: Callable[[], bool]) -> Any:
        world = replace(make_world(settings), stop=stopping, progress=lambda line: None)
        try:
            report = run_jobs(world, [job])
        finally:
            world.ledger.close()
        return report

    daemon = Daemon(settings, run_job)
    say(f"partnerloop schedule: {len(settings.schedule)} job(s) in {settings.clinic.timezone}; stop with Ctrl-C or SIGTERM")
    daemon.forever()
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from automations.jobs import JOBS
    from automations.mail.ledger import Ledger

    ledger = Ledger.in_state_dir(settings.state_dir)
    now = datetime.now(settings.clinic.tz)
    runs = ledger.last_runs()
    say("Jobs (last run, result, emails sent):")
    for job in JOBS:
        run = runs.get(job)
        if run is None:
            say(f"  {job:<13} never run")
            continue
        when = run.started.astimezone(settings.clinic.tz).strftime("%Y-%m-%d %H:%M")
        say(f"  {job:<13} {when}  {run.result:<7} {run.sent} sent")
    sent = ledger.sent_in_last_day(now)
    say(f"Emails in the last 24 hours: {sent} of daily_limit {settings.email.daily_limit}")
    unknown = ledger.unknown()
    if unknown:
        say(f"{len(unknown)} email(s) with unknown outcome (the run stopped while sending them):")
        for record in unknown:
            say(f"  {record.key.row_id} {record.key.job} {record.template} (since {record.claimed_at.astimezone(settings.clinic.tz):%Y-%m-%d %H:%M}): "
                f"check with the recipient, then `partnerloop resolve {record.key.row_id} --job {record.key.job} "
                "--sent` or `--resend`")
    else:
        say("No unknown-outcome emails to resolve.")
    settled = ledger.settled_from_mailbox()
    if settled:
        say(f"Settled automatically (found in the clinic's sent mail), the latest {len(settled)}:")
        for record in settled:
            settled_at = record.settled_at.astimezone(settings.clinic.tz) if record.settled_at else now
            say(f"  {record.key.row_id} {record.key.job} {record.template} (settled {settled_at:%Y-%m-%d %H:%M})")
    return 0


def cmd_todo(args: argparse.Namespace, settings: Settings) -> int:
    """`todo`: the Dashboard's To do block, grouped by Owner; exit 0 whatever it holds."""
    from automations.executor import todo_now
    from automations.todo import by_owner

    world = make_world(settings, args)
    try:
        items = todo_now(world)
    finally:
        world.ledger.close()
    today = now_from(args, settings).date()
    if not items:
        say(f"To do: nothing needs a person now ({today.isoformat()}).")
        return 0
    say(f"To do: {len(items)} row(s) need a person ({today.isoformat()}); each row's Automation status says more.")
    for owner, mine in by_owner(items):
        say()
        say(f"{owner} ({len(mine)})")
        for item in mine:
            partner = f" ({item.partner})" if item.partner else ""
            since = f", since {item.since.isoformat()}" if item.since else ""
            say(f"  {item.where}{partner}{since}: {item.action}")
    return 0


def cmd_resolve(args: argparse.Namespace, settings: Settings) -> int:
    from automations.mail.ledger import Ledger

    ledger = Ledger.in_state_dir(settings.state_dir)
    records = ledger.resolve(args.row_id, args.job, sent=args.sent, now=datetime.now(settings.clinic.tz))
    if not records:
        where = args.row_id + (f" in {args.job}" if args.job else "")
        what = ("no email of it has an unknown outcome (`partnerloop status` lists those)" if args.sent
                else "partnerloop has sent no email for it")
        say(f"resolve: nothing to resolve for {where}: {what}")
        return 0
    for record in records:
        verb = "marked as delivered" if args.sent else "will be sent again on the next run"
        say(f"  {record.key.job} {record.key.row_id} {record.template}: {verb}")
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from automations.demo import run_demo

    now = now_from(args, settings) if args.now else None
    demo, report, moment = run_demo(settings, Path(args.dir), now)
    for line in report.summary():
        say(line)
    say(f"Demo run as at {moment:%a %Y-%m-%d %H:%M} ({settings.clinic.timezone}).")
    say(f"  Workbook (open it in Excel or LibreOffice): {demo.sheet.path}")
    say(f"  Emails, one .eml file each (open them in any mail client): {demo.email.outbox_dir}")
    say(f"  Dashboard (the owner's figures and chart): the Dashboard tab of {demo.sheet.path.name}")
    say("  Statuses: the Automation status column of each tab; every email is on the Log tab.")
    return 0


def cmd_templates(args: argparse.Namespace, settings: Settings) -> int:
    """`templates export DIR`: copy the shipped templates to edit; a file already there is kept."""
    import shutil

    from automations.config import DEFAULT_TEMPLATES

    target = Path(args.dir)
    try:
        target.mkdir(parents=True, exist_ok=True)
        shipped = sorted(p for p in DEFAULT_TEMPLATES.iterdir() if p.suffix == ".j2" or p.name == "README.md")
        kept = [p.name for p in shipped if (target / p.name).exists()]
        for path in shipped:
            if path.name not in kept:
                shutil.copy2(path, target / path.name)
    except OSError as exc:
        raise PartnerloopError(f"templates export: cannot write to {target} ({exc.strerror or exc})") from None
    say(f"templates export: {len(shipped) - len(kept)} template file(s) copied to {target}"
        + (f"; {len(kept)} already there and kept as they are: {', '.join(kept)}" if kept else ""))
    say(f"Edit the ones you want to change and delete the others, then set in the config:  [templates] dir = "
        f"\"{target}\"  (a template missing there is the shipped one). `partnerloop check` tries every template.")
    return 0


COMMANDS: dict[str, Command] = {
    "demo": cmd_demo, "schedule": cmd_schedule,
    "init": cmd_init, "check": cmd_check, "run": cmd_run, "preview": cmd_preview, "status": cmd_status,
    "resolve": cmd_resolve, "templates": cmd_templates, "todo": cmd_todo,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="partnerloop", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="settings file (default: $PARTNERLOOP_CONFIG or config/settings.toml)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_now(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--now", help="act as at YYYY-MM-DDTHH:MM (clinic time), or YYYY-MM-DD when the send window opens")
        return p

    p = with_now(sub.add_parser("init", help="create the missing tabs and columns"))
    p.add_argument("--demo", action="store_true", help="also add fictional sample rows")
    p = with_now(sub.add_parser("check", help="validate every row; exit 1 if there are problems"))
    p.add_argument("--mail", action="store_true", help="instead, sign in to the mail server and mailbox; send nothing")
    p = with_now(sub.add_parser("run", help="run jobs once"))
    p.add_argument("jobs", nargs="*", metavar="JOB")
    p.add_argument("--all", action="store_true", help="run every job")
    p.add_argument("--dry-run", action="store_true", help="show what would be sent and written; change nothing")
    p.add_argument("--limit", type=int, metavar="N", help="send at most N emails")
    p = with_now(sub.add_parser("preview", help="render what a job would send now"))
    p.add_argument("job", metavar="JOB")
    p.add_argument("--id", help="only this row ID")
    p = with_now(sub.add_parser("demo", help="build a demo workbook, run every job once, write the emails as .eml"))
    p.add_argument("--dir", default="partnerloop-demo", help="where to put the demo (default: ./partnerloop-demo)")
    sub.add_parser("schedule", help="run the jobs on the [schedule] lines until stopped")
    sub.add_parser("status", help="last runs, emails sent against the limit, sends to resolve")
    with_now(sub.add_parser("todo", help="print the To do list (rows that need a person), grouped by Owner"))
    p = sub.add_parser("resolve", help="settle an unknown-outcome send, or ask for a re-send")
    p.add_argument("row_id", metavar="ROW-ID")
    p.add_argument("--job", help="only this job's emails of the row")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--sent", action="store_true", help="staff confirmed it arrived")
    how.add_argument("--resend", action="store_true", help="send it again on the next run")
    p = sub.add_parser("templates", help="templates export DIR: copy the shipped templates to edit")
    p.add_argument("action", choices=["export"])
    p.add_argument("dir", metavar="DIR", help="the folder to copy them into")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        settings = load_settings(args.config)
        return COMMANDS[args.command](args, settings)
    except PartnerloopError as exc:
        print(f"partnerloop {args.command}: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"partnerloop {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: one line for staff, where it happened for whoever fixes it
        print(f"partnerloop {args.command}: unexpected error ({where(exc)}); nothing more was done. "
              "Please report this line.", file=sys.stderr, flush=True)
        return 2



if __name__ == "__main__":
    raise SystemExit(main())
