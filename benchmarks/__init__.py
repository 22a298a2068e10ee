"""CPU benchmarks of pdd: run them all with ``python -m benchmarks [--quick]`` (see benchmarks/README.md).

Importing the package tunes the allocator as the `pdd` command does (`pdd.allocator`), before any
benchmark imports torch or starts a thread, so every step is timed in the process settings `pdd train` has.
"""

from pdd.allocator import tune_allocator

tune_allocator()
