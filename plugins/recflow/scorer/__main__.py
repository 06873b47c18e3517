"""``python -m recflow.scorer``: the scorer process (see :mod:`recflow.scorer.service`)."""

import sys

from recflow.scorer.service import main

sys.exit(main())
