"""mlfrontends.unlearning."""
