"""``python -m diskqueue.cli`` is ``diskq``."""

import sys

from .admin import main

sys.exit(main())
