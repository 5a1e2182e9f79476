"""Bounds shared by every command and the server (device-safe: no imports)."""

MAX_THREADS = 1024  # intra-op/inference threads: more only exhausts the machine's thread limit (issue 25)
