"""Test helpers: small generated volumes and fixtures shared by the tests."""
