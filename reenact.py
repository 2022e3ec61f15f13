"""Reenact a trained avatar: ``python reenact.py ckpt_path=... mode=preset`` (code: src/cli/reenact.py)."""

from src.cli.reenact import main

if __name__ == "__main__":
    main()
