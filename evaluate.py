"""Score an avatar or folders of frames: ``python evaluate.py ckpt_path=...`` (code: src/cli/evaluate.py)."""

from src.cli.evaluate import main

if __name__ == "__main__":
    main()
