"""What tests share: isolation, Kafka producing and reading, running apps, waiting, builders.

- `isolation`: the migrated template database, a fresh clone per test or module, unique topic prefixes.
- `kafka`: one producer wrapper (`Producer`, `produce`) and `TopicReader` (no consumer group).
- `apps`: a service app's lifespan in-process, with an HTTP client bound to it.
- `waiting`: `eventually()`, the deadline-bound poll every asynchronous check uses.
- `builders`: request bodies of the HTTP APIs and contracts (interaction, vote, annotation request).
- `logs`: structlog events captured in-process, module loggers cached or not.
"""
