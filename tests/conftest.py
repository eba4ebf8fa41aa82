"""Shared pytest configuration (the tests directory is on ``sys.path``, see pyproject)."""
