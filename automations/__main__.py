"""`python -m automations` runs the partnerloop command line."""

from automations.cli import main

raise SystemExit(main())
