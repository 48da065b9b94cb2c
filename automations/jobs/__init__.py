"""The jobs of SPEC §2, by name. Each is a pure function JobInput -> Plan."""

from __future__ import annotations

from automations.jobs.dashboard import plan_dashboard
from automations.jobs.digest import plan_digest
from automations.jobs.discharge import plan_discharge
from automations.jobs.events import plan_events
from automations.jobs.outreach import plan_outreach
from automations.jobs.plan import Job
from automations.jobs.referrals_in import plan_referrals_in
from automations.jobs.replies import plan_replies
from automations.jobs.scorecard import plan_scorecard

JOBS: dict[str, Job] = {
    "outreach": plan_outreach,
    "discharge": plan_discharge,
    "referrals_in": plan_referrals_in,
    "events": plan_events,
    "scorecard": plan_scorecard,
    "dashboard": plan_dashboard,
    "digest": plan_digest,
    "replies": plan_replies,
}
