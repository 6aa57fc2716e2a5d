"""Robot datasets: URIs, the SO-100/101 schema, synthetic data and the per-node episode split."""
