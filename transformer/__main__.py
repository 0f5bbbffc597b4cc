"""``python -m transformer ...``: see ``transformer/apps/cli.py``."""

import sys

from .apps.cli import main

sys.exit(main())
