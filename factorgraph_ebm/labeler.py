"""The old import path of :mod:`factorgraph_ebm.sequence.labeler`, kept working: this module *is*
that one (the same module object, so every name and every patch is shared)."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("factorgraph_ebm.sequence.labeler")
