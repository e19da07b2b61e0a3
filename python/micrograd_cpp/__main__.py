"""python -m micrograd_cpp: micrograd's demo, trained and timed (see micrograd_cpp.demo);
python -m micrograd_cpp digits: a digit classifier, compiled and replayed (micrograd_cpp.digits)."""

import sys

if sys.argv[1:2] == ["digits"]:
    from .digits import main

    sys.exit(main(sys.argv[2:]))

from .demo import main

sys.exit(main())
