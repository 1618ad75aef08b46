"""``python -m lunar_recon``: the same command line as ``lunar-recon``."""

from .cli import main

raise SystemExit(main())
