"""Moves opaque bytes between machines (SFTP, HTTPS, a local folder, memory).

Knows nothing of envelopes, cases or the ``gateway`` package, and imports nothing from it.
"""
