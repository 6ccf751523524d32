"""`python -m livedrill_lab ...`: the lab's command line (livedrill_lab.cli)."""

import sys

from livedrill_lab.cli import main

sys.exit(main())
