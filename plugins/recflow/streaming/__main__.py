"""``python -m recflow.streaming``: the scorer process (see :mod:`recflow.streaming.service`).

BLAS runs single-threaded unless the environment says otherwise, set before NumPy is imported: a
poll's matrix product is small, and OpenBLAS's worker threads spin-waiting on cores shared with the
broker and the callers made a 1,000 x 32 x 150 product take 26 ms instead of 0.2 ms (measured here).
"""

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import sys  # noqa: E402

from recflow.streaming.service import main  # noqa: E402

sys.exit(main())
