"""`python -m voxport`: the command line."""

import sys

from voxport.cli import main

sys.exit(main())
