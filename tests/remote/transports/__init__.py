"""Transport tests: one contract suite for every transport, then each one's own."""
