"""One module per CLI command: each takes a resolved config and does the work."""
