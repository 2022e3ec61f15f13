"""Core data definitions shared by every layer: the subject layout, parameter keys, label names."""
