"""Repository-level pytest configuration (fixtures live in tests/conftest.py)."""
