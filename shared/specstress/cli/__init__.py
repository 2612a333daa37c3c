"""The `specstress` command line: `main` registers the command groups."""
