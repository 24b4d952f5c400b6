"""Pipeline definitions."""
