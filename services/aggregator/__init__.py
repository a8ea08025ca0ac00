"""aggregator: what it means. Interactions and votes in; preference pairs, annotation requests, stats out."""
