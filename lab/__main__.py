"""`python -m lab`: the consistency lab."""

import sys

from .run import main

sys.exit(main())
