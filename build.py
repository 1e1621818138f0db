"""Build the site: ``python build.py [build|serve|check] ...`` (see ``--help``)."""

from raypress.cli import run

if __name__ == "__main__":
    run()
