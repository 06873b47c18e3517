"""``python -m recflow.cli``: the ``recflow`` command without its console script (see :mod:`.main`)."""

import sys

from recflow.cli.main import main

sys.exit(main())
