"""``python -m recflow.serving_http``: the HTTP API process (see :mod:`recflow.serving_http.server`).

BLAS runs single-threaded unless the environment says otherwise, set before NumPy is imported (the
workers inherit it): one request's product is small, and OpenBLAS threads spinning on cores shared with
the other workers cost more than they save (measured for the Kafka scorer, which does the same).
"""

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import sys  # noqa: E402

from recflow.serving_http.server import main  # noqa: E402

sys.exit(main())
