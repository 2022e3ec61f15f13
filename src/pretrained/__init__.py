"""Resolvers of real pretrained weights (metrics and frozen loss networks).

Each weight comes from a path, a cache or a package, never random.
"""
