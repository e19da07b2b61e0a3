"""python -m micrograd_cpp: micrograd's demo, trained and timed (see micrograd_cpp.demo)."""

import sys

from .demo import main

sys.exit(main())
