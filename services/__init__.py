"""The three services: ingest, feedback, aggregator. They meet only through shared/ and Kafka."""
