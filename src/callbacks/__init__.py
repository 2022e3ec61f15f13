"""Lightning callbacks (image and video logging)."""
