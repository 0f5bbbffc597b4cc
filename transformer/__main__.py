"""``python -m transformer ...``: see ``transformer/cli.py``."""

import sys

from .cli import main

sys.exit(main())
