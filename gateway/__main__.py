"""``python -m gateway``: the ``gateway`` command. Guarded, so a process that imports this
module without running it (a ``spawn`` worker of the intake pool) starts no command."""

import sys

from gateway.cli import main

if __name__ == "__main__":
    sys.exit(main())
