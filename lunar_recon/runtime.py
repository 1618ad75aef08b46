"""Process settings for lunar_recon's programs (``stereo_node``, ``lunar-recon``), applied
before numpy loads its BLAS.  Library users keep their own settings."""
from __future__ import annotations

import os


def prefer_single_threaded_blas() -> None:
    """numpy's OpenBLAS threads keep spinning after each call.  The geometry's (N, 3) x (3, 3)
    products gain nothing from them, and the spinning threads take the cores from the network
    that runs next: on 2 cores the pipeline measured 122 ms per pair with them and 75 ms with
    one BLAS thread (torch's own thread pool is not affected).  A user's setting wins; no
    effect once numpy is loaded."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
