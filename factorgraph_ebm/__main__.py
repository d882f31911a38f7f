"""``python -m factorgraph_ebm``: the ``fgebm`` command line (see :mod:`factorgraph_ebm.cli`)."""

from .cli import main

raise SystemExit(main())
