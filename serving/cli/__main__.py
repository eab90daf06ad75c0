"""``python -m serving.cli``: the ``kiln`` command without its console script."""

import sys

from serving.cli import main

sys.exit(main())
