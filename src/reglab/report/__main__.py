"""`python -m reglab.report SWEEP_DIR`: see reglab.report.command."""

import sys

from reglab.report.command import main

sys.exit(main())
