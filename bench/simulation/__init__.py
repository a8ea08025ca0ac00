"""The traffic simulator's parts: scenario and truth, the seeded generator, drivers, scoring (see bench.simulate)."""
