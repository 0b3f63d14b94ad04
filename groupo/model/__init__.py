"""Models: loading (local directory or Hub id), the offline tiny model, the policy (a model with
its forward path), forward paths (axis ``forward``: naive, Prefix Grouper) and CPU products."""
