"""mlfrontends.decoding."""
