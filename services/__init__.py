"""One package per pipeline stage; no service imports another."""
