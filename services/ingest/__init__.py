"""ingest: what the model said. Validates interactions, stamps them, publishes to `interactions`."""
