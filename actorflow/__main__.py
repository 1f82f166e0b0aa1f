from __future__ import annotations

import sys

from actorflow.cli import main

sys.exit(main())
