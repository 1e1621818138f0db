"""``python -m raypress``: the same CLI as ``build.py`` and the ``raypress`` script."""

import sys

from raypress.cli import main

sys.exit(main())
