"""The test project's app."""
