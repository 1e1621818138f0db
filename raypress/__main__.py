"""``python -m raypress``: the same CLI as ``build.py`` and the ``raypress`` script."""

from raypress.cli import run

run()
