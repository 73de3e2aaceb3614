"""The `minicoconv` command line."""
