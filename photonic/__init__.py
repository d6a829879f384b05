"""photonic."""
