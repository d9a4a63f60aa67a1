"""`python -m benchmarks`: KMNIST Lab's speed and memory figures beside their targets, baselines from the same run."""
