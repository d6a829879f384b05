"""mlfrontends.lm."""
