"""The environment a session gets: an allow-list of the builder's, plus fixed settings.

No tokens or credentials from the builder's environment reach a snippet: only these
names (and ``LC_*``) are copied.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

ALLOWED = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "PYTHONPATH",
        "VIRTUAL_ENV",
        "CONDA_PREFIX",
        "LD_LIBRARY_PATH",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "XDG_CACHE_HOME",
        "XDG_CONFIG_HOME",
        "MPLCONFIGDIR",
        "SOURCE_DATE_EPOCH",
        "PYTHONHASHSEED",
    }
)

FIXED = {
    "MPLBACKEND": "module://raypress.execution.mpl_backend",
    "PLOTLY_RENDERER": "plotly_mimetype",  # fig.show() and fig display as JupyterLab has them
    "NO_COLOR": "1",
    "TERM": "dumb",
    "PYTHONUNBUFFERED": "1",
    "PYTHONIOENCODING": "utf-8",
}


def base_env(
    builder_env: Mapping[str, str], package_root: str, interpreter: str = sys.executable
) -> dict[str, str]:
    """The allow-listed part of the builder's environment plus the fixed settings.

    ``package_root`` (the folder holding ``raypress``) is put on PYTHONPATH, so the fork
    server and the matplotlib backend import from the same raypress as the build. The
    folder of ``interpreter`` (the build's Python, which runs the snippets) goes first on
    PATH when PATH lacks it, as activating its virtual environment would do: a snippet's
    ``subprocess.run(["python", ...])`` then starts that Python, not one the sandbox
    cannot see (a pyenv shim in the builder's home) or none at all.
    """
    env = {k: v for k, v in builder_env.items() if k in ALLOWED or k.startswith("LC_")}
    env.update(FIXED)
    paths = [package_root] + [p for p in env.get("PYTHONPATH", "").split(":") if p]
    env["PYTHONPATH"] = ":".join(dict.fromkeys(paths))
    folder = str(Path(interpreter).parent) if interpreter else ""
    searched = env.get("PATH", "").split(":")
    if folder and folder not in searched:
        env["PATH"] = ":".join([folder, *(p for p in searched if p)])
    return env
