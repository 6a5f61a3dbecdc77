"""`python -m microadjust`: the same as the `microadjust` command."""

import sys

from .cli import main

sys.exit(main())
