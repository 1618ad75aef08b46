"""Offline command-line tools (each one a ``lunar-recon`` subcommand)."""
