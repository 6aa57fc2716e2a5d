"""zk0 benchmarks (`make bench`): they print figures; nothing here asserts on time."""
