"""Multi-view (SVD-MV, paper §4.4): the image-to-video model finetuned to turn a front view into a 360-degree orbit,
the camera's elevation a fourth vector id (a sinusoidal embedding concatenated to the vector condition)."""

from __future__ import annotations

from svd.tasks.image_to_video import ImageToVideo

KIND = "multi-view"


class MultiView(ImageToVideo):
    """Stage mv."""

    kind = KIND
    evaluator = "svd.evaluation.multiview:evaluate_model"

    def model_kind(self, stage: str) -> str:
        return KIND

    def registered_name(self, stage: str) -> str | None:
        return "svd-mv"


TASK = MultiView()
