"""objlib's scripts (demo, benchmarks, chaos runs, the CLI reference), a package so the tests
can import them and they can import each other and ``tests.support`` without ``sys.path``
edits. Run them as ``python scripts/NAME.py`` from a dev install (``make`` makes one; the
repository root is then on ``sys.path``) or with ``PYTHONPATH=.``."""
