"""Views: domain data (dataclasses, dicts) turned into Rich renderables and plain lines.

The modules that decide things (``status``, ``failures``, ``reconcile``, ``foreground``,
``scan``) return data and never import Rich; ``cli.py`` calls one of them, then a view here.
A view may read domain modules (their dataclasses and constants), never the reverse.

    words      durations, "3m 12s ago", clock times: the small formatters every view shares
    status     ``objlib status``: the Rich view, the plain line, the live ``--watch`` loop
    failures   ``objlib failures``: failed and skipped files, grouped, with the fix
    reconcile  ``objlib reconcile``: counts per kind and the first findings of each
    scan       ``objlib scan``: the hashing progress bar and the summary table
    upload     ``objlib upload``: the dry-run plan, the live progress, the summary panel
    search     ``objlib search``: the answer and its numbered citations
"""
