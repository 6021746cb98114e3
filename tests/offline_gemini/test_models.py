"""Output pixel sizes: the documented tables, as the SDK receives them."""

from __future__ import annotations

import pytest
from google import genai

from offline_gemini import (
    image_size_for,
)
from tests.offline_gemini.support import (
    FLASH,
    PRO,
    final_images,
    image_config,
    parts_of,
    pil,
    prompt_with_images,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning"
)


# --------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    ("model", "ratio", "size", "expected"),
    [
        (FLASH, None, None, (1024, 1024)),
        (FLASH, "21:9", "4K", (1536, 672)),
        ("models/" + FLASH, "9:16", None, (768, 1344)),
        ("gemini-2.5-flash-image-preview", "3:4", None, (864, 1184)),
        (PRO, "2:3", None, (848, 1264)),
        (PRO, "16:9", "2K", (2752, 1536)),
        (PRO, "21:9", "4K", (6336, 2688)),
        (PRO, "4:5", "4K", (3712, 4608)),
    ],
)
def test_image_size_for_documented_tables(model: str, ratio: str | None, size: str | None, expected: tuple[int, int]) -> None:
    assert image_size_for(model, ratio, size) == expected


@pytest.mark.parametrize(("model", "ratio", "size"), [("nope", "1:1", None), (PRO, "7:3", None), (PRO, "1:1", "1k")])
def test_image_size_for_rejects_unknown_values(model: str, ratio: str, size: str | None) -> None:
    with pytest.raises(ValueError):
        image_size_for(model, ratio, size)


@pytest.mark.parametrize(
    ("model", "ratio", "size", "expected"),
    [
        (FLASH, "16:9", None, (1344, 768)),
        (FLASH, "2:3", None, (832, 1248)),
        (PRO, None, None, (1024, 1024)),
        (PRO, "3:2", "2K", (2528, 1696)),
        (PRO, "21:9", "4K", (6336, 2688)),
    ],
)
async def test_sdk_receives_exact_pixel_sizes(
    client: genai.Client, model: str, ratio: str | None, size: str | None, expected: tuple[int, int]
) -> None:
    response = await client.aio.models.generate_content(
        model=model, contents="A lighthouse at dusk", config=image_config(ratio, size)
    )
    [final] = final_images(response)
    image = pil(final)
    assert image.format == "PNG" and image.size == expected
    assert final.inline_data is not None and final.inline_data.mime_type == "image/png"
    for thought in [p for p in parts_of(response) if p.thought and p.inline_data]:
        assert pil(thought).size == (expected[0] // 2, expected[1] // 2)


async def test_missing_ratio_follows_first_input_image(client: genai.Client) -> None:
    response = await client.aio.models.generate_content(
        model=FLASH, contents=prompt_with_images("Make it snow", (1600, 900))
    )
    assert pil(final_images(response)[0]).size == (1344, 768)
