"""Lightning callbacks (image and video logging, last checkpoint)."""
