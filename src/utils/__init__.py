"""Small shared utilities (compatibility shims, asset lookup, atomic I/O)."""
