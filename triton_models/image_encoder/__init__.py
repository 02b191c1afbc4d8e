"""EfficientNet-Lite0 product-image encoder: in-process (torch / ONNX Runtime) and ONNX export.

The Triton model ``triton_models/repository/image_encoder`` serves the same code.
"""

from triton_models.image_encoder.encoder import (
    EMBEDDING_DIM,
    IMAGE_SIZE,
    ImageDecodeError,
    ImageEncoder,
    image_to_pixels,
    preprocess,
)

__all__ = [
    "EMBEDDING_DIM",
    "IMAGE_SIZE",
    "ImageDecodeError",
    "ImageEncoder",
    "image_to_pixels",
    "preprocess",
]
