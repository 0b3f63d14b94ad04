"""Model loading, the offline tiny model, and log-prob forward passes."""
