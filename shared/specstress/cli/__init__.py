"""The `specstress` command line."""
