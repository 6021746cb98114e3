"""The stand-in's own table of image models: aspect ratios, image sizes and pixel sizes.

An independent copy of the documented tables, so that the stand-in never trusts the
bot's view of the API.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ASPECT_RATIOS: tuple[str, ...] = (
    "1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9",
)
IMAGE_SIZES: tuple[str, ...] = ("1K", "2K", "4K")

_FLASH_PIXELS: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024), "2:3": (832, 1248), "3:2": (1248, 832), "3:4": (864, 1184),
    "4:3": (1184, 864), "4:5": (896, 1152), "5:4": (1152, 896), "9:16": (768, 1344),
    "16:9": (1344, 768), "21:9": (1536, 672),
}
_PRO_1K: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024), "2:3": (848, 1264), "3:2": (1264, 848), "3:4": (896, 1200),
    "4:3": (1200, 896), "4:5": (928, 1152), "5:4": (1152, 928), "9:16": (768, 1376),
    "16:9": (1376, 768), "21:9": (1584, 672),
}
_PRO_2K: dict[str, tuple[int, int]] = {
    "1:1": (2048, 2048), "2:3": (1696, 2528), "3:2": (2528, 1696), "3:4": (1792, 2400),
    "4:3": (2400, 1792), "4:5": (1856, 2304), "5:4": (2304, 1856), "9:16": (1536, 2752),
    "16:9": (2752, 1536), "21:9": (3168, 1344),
}
_PRO_4K: dict[str, tuple[int, int]] = {
    "1:1": (4096, 4096), "2:3": (3392, 5056), "3:2": (5056, 3392), "3:4": (3584, 4800),
    "4:3": (4800, 3584), "4:5": (3712, 4608), "5:4": (4608, 3712), "9:16": (3072, 5504),
    "16:9": (5504, 3072), "21:9": (6336, 2688),
}


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """What the stand-in knows about one image model."""

    name: str
    pixels: Mapping[str, Mapping[str, tuple[int, int]]]  # size label -> ratio -> (w, h)
    image_tokens: Mapping[str, int]  # size label -> output tokens per image
    max_input_images: int
    thinking: bool
    search: bool
    real_mime: str  # what the live model answers: Pro JPEG, Flash PNG
    # Per size label: the amplitude of the noise that, with real sizes on, brings the
    # encoded bytes to the sizes measured on the live API (see gemini-wire notes).
    real_noise: Mapping[str, int]

    @property
    def has_sizes(self) -> bool:
        """True when the model accepts ``imageConfig.imageSize``."""
        return len(self.pixels) > 1


_FLASH = ModelSpec(
    name="gemini-2.5-flash-image",
    pixels={"1K": _FLASH_PIXELS},
    image_tokens={"1K": 1290},
    max_input_images=3,
    thinking=False,
    search=False,
    real_mime="image/png",
    real_noise={"1K": 2},  # about 1.4 MB at 1024x1024
)
_PRO = ModelSpec(
    name="gemini-3-pro-image-preview",
    pixels={"1K": _PRO_1K, "2K": _PRO_2K, "4K": _PRO_4K},
    image_tokens={"1K": 1120, "2K": 1120, "4K": 2000},
    max_input_images=14,
    thinking=True,
    search=True,
    real_mime="image/jpeg",
    real_noise={"1K": 24, "2K": 27, "4K": 6},  # 16:9: about 1.35, 5.6 and 7.6 MB
)
KNOWN_MODELS: dict[str, ModelSpec] = {
    "gemini-2.5-flash-image": _FLASH,
    "gemini-2.5-flash-image-preview": _FLASH,
    "gemini-3-pro-image-preview": _PRO,
}


def model_id(model: str) -> str:
    """Strip any leading ``models/`` from a model name."""
    while model.startswith("models/"):
        model = model[len("models/"):]
    return model


def resolve_model(model: str) -> ModelSpec | None:
    """The spec for ``model`` (``X`` or ``models/X``), or None when unknown."""
    return KNOWN_MODELS.get(model_id(model))


def image_size_for(
    model: str, aspect_ratio: str | None, image_size: str | None
) -> tuple[int, int]:
    """Documented output pixel size (width, height) for a model, ratio and size.

    A missing ratio means 1:1 and a missing size means 1K. Models without sizes
    (flash) ignore ``image_size``. Raises ValueError for unknown models, ratios or sizes.
    """
    spec = resolve_model(model)
    if spec is None:
        raise ValueError(f"unknown model: {model}")
    ratio = aspect_ratio or "1:1"
    if ratio not in ASPECT_RATIOS:
        raise ValueError(f"unsupported aspect ratio: {ratio}")
    label = (image_size or "1K") if spec.has_sizes else "1K"
    if label not in spec.pixels:
        raise ValueError(f"unsupported image size: {label}")
    return spec.pixels[label][ratio]


def closest_ratio(width: int, height: int) -> str:
    """The supported aspect ratio closest (in log space) to width:height."""
    target = math.log(width / height)

    def distance(ratio: str) -> float:
        a, b = ratio.split(":")
        return abs(math.log(int(a) / int(b)) - target)

    return min(ASPECT_RATIOS, key=distance)



@dataclass(frozen=True)
class ImagenSpec:
    """What the stand-in knows about one Imagen 4 model (``:predict``)."""

    name: str
    max_samples: int
    sizes: tuple[str, ...]  # sampleImageSize values it takes


# Imagen's output sizes (Google's Imagen documentation; not in the Gemini image seed).
IMAGEN_RATIOS: tuple[str, ...] = ("1:1", "3:4", "4:3", "9:16", "16:9")
IMAGEN_PIXELS: dict[str, dict[str, tuple[int, int]]] = {
    "1K": {"1:1": (1024, 1024), "3:4": (896, 1280), "4:3": (1280, 896),
           "9:16": (768, 1408), "16:9": (1408, 768)},
    "2K": {"1:1": (2048, 2048), "3:4": (1792, 2560), "4:3": (2560, 1792),
           "9:16": (1536, 2816), "16:9": (2816, 1536)},
}
IMAGEN_MODELS: dict[str, ImagenSpec] = {
    "imagen-4.0-generate-001": ImagenSpec("imagen-4.0-generate-001", 4, ("1K", "2K")),
    "imagen-4.0-ultra-generate-001": ImagenSpec("imagen-4.0-ultra-generate-001", 1, ("1K", "2K")),
    "imagen-4.0-fast-generate-001": ImagenSpec("imagen-4.0-fast-generate-001", 4, ("1K",)),
}


def model_info(name: str) -> dict[str, Any]:
    """The ``Model`` resource ListModels answers for a known model name."""
    if name in IMAGEN_MODELS:
        return {"name": f"models/{name}", "displayName": f"{name} (offline)",
                "inputTokenLimit": 480, "outputTokenLimit": 8192,
                "supportedGenerationMethods": ["predict"]}
    spec = KNOWN_MODELS[name]
    return {
        "name": f"models/{name}",
        "displayName": f"{name} (offline)",
        "inputTokenLimit": 65536 if spec.thinking else 32768,
        "outputTokenLimit": 32768,
        "supportedGenerationMethods": ["generateContent", "countTokens", "batchGenerateContent"],
        "thinking": spec.thinking,
    }
