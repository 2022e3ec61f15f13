"""Train an avatar: ``python train.py experiment=nha_video data.path=me.mp4`` (code: src/cli/train.py)."""

from src.cli.train import main

if __name__ == "__main__":
    main()
