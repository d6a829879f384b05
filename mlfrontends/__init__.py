"""mlfrontends."""
