"""`python -m services.ops`: the operator commands (see services/ops/cli.py)."""

import sys

from services.ops.cli import main

if __name__ == "__main__":
    sys.exit(main())
