"""`python -m services.exporter KIND --out DIR [...]`: write one export folder from a running aggregator."""

import sys

from services.exporter.cli import main

if __name__ == "__main__":
    sys.exit(main())
