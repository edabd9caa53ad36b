"""Test suite (a package, so ``tests.conftest`` imports from any working directory)."""
