"""objlib's test suite (a package, so ``tests.support`` is importable by tests and scripts)."""
