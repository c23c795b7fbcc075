"""Command-line tools for the pip-only setup: ``roi-launch`` (launch files) and ``roi-param`` (live parameters)."""
