"""CPU benchmarks of pdd: run them all with ``python -m benchmarks [--quick]`` (see benchmarks/README.md)."""
