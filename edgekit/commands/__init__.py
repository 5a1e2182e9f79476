"""One module per CLI command group. Shared option helpers live in ``_common``."""
