"""Avatar LightningModules (one per model family)."""
