"""``python -m captum_pags.cli``."""

import sys

from . import main

sys.exit(main())
