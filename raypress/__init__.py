"""raypress: a static blog generator whose Python snippets really run."""

__version__ = "0.1.0"
