"""The exporter: `python -m services.exporter KIND --out DIR`, a thin HTTP client of the aggregator's export route."""
