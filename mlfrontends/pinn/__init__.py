"""mlfrontends.pinn."""
