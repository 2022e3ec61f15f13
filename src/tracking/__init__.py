"""Head tracking: fit the head model to a subject's landmarks (batched over frames), score it against
ground truth, and render inspection overlays.

``track_subject(root, headmodel, cfg)`` (:mod:`src.tracking.run`), ``score_tracking(layout, headmodel)``
(:mod:`src.tracking.score`); CLI ``python -m src.tracking root=<subject>`` (conf/tracking.yaml).
"""

from src.tracking.run import track_subject, tracking_config
from src.tracking.score import attach_ground_truth, score_tracking

__all__ = ["attach_ground_truth", "score_tracking", "track_subject", "tracking_config"]
