"""The `specstress` command line: `main` registers the command groups, `commands` and the other
modules hold them, `common` the console, the config option and one-line errors."""

from specstress.cli.main import app, main

__all__ = ["app", "main"]
