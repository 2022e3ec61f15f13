"""Resolvers of real pretrained weights (metrics and frozen loss networks): a path, a cache or a package, never random."""
