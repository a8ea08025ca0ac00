"""Contracts and plumbing every service speaks: events, topics, settings, logging, Kafka, PostgreSQL."""
