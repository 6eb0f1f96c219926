"""The command-line tools: thin layers over :mod:`wulf.client` (no web framework imported here)."""
