"""What the tests and ``scripts/`` share, so no test module imports another and no script
edits ``sys.path``:

    waits      wait_for: poll a condition until it holds, with a deadline (never a fixed sleep)
    processes  Child, Children, EmulatorProcess, Consumer: child processes in their own group
    store      documents (the emulator's store listing), compare / assert_converged (one
               document per indexed file version, nothing else), unsettled
    disk       write_library (small valid text files), read_only (a path nothing can write)
    catalogue  file_states, queued: the catalogue as the tests look at it
    sdk        the real google-genai SDK and plain HTTP pointed at an in-process emulator

Importable because the repository root is on ``sys.path``: ``pip install -e .`` puts it there
(hatch ``dev-mode-dirs``), as does ``PYTHONPATH=$PWD`` and pytest's ``pythonpath``.
"""
