"""A synthetic talking head with ground truth, rendered from the ICT-FaceKit model.

Run ``python -m src.datamodules.synthetic out_dir=... resolution=256 n_frames=120 seed=0``.
"""
