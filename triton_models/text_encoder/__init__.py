"""all-MiniLM-L6-v2 text encoder: ONNX export (pooling and normalisation in the graph) and
the ONNX Runtime encoder that the Triton ``text_encoder``, the categoriser and training share.
"""

from triton_models.text_encoder.encoder import EMBEDDING_DIM, MiniLM

__all__ = ["EMBEDDING_DIM", "MiniLM"]
