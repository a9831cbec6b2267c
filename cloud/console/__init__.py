"""The operations console at ``/console``: server-rendered pages with small hand-written scripts (issue 16)."""
