"""ops: operator commands run against a deployment (`python -m services.ops ...`); imports shared/ only."""
