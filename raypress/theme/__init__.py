"""The built-in theme: Jinja2 templates and assets, shipped inside the package.

A site's own ``templates/`` folder overrides any file here by name (templates and
``assets/`` alike), as MkDocs' ``custom_dir`` does; what it does not override comes from
this folder.
"""

from __future__ import annotations

from pathlib import Path

THEME_PATH = Path(__file__).resolve().parent
