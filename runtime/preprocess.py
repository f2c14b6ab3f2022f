"""SAM3 image preprocessing: stated in ``efficient_sam3.contract`` (numpy + cv2, no torch); the runtime's name for it."""

from efficient_sam3.contract import preprocess_frame

__all__ = ["preprocess_frame"]
