"""Helpers shared by tests, benchmarks and the demo: a test PKI (``pki``) and a real
OpenSSH sshd on loopback (``sshd``). Plain classes, usable outside pytest."""
