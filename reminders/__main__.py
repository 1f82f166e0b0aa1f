"""`python -m reminders`: one node of the reminders cluster (see `reminders.cli`)."""

from __future__ import annotations

import sys

from reminders.cli import main

if __name__ == "__main__":
    sys.exit(main())
