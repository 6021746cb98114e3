"""Google's documented dummy thought signature on history parts: accepted by default, and
refused as a missing signature when the stand-in is told to (``refuse_dummy_signatures``),
as a model that enforces the check on its own turns would."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from google import genai
from google.genai import errors, types

from offline_gemini import OfflineGemini
from offline_gemini.__main__ import _parser
from tests.offline_gemini.support import PRO, final_images, first_turn, follow_up, make_client

pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning"
)

DUMMIES = (b"skip_thought_signature_validator", b"context_engineering_is_the_way_to_go")


@pytest.fixture
async def refusing() -> AsyncIterator[tuple[OfflineGemini, genai.Client]]:
    async with OfflineGemini(refuse_dummy_signatures=True) as server:
        sdk = make_client(server.base_url)
        yield server, sdk
        await sdk.aio.aclose()


def with_signatures(turn: types.Content, *indices_and_values: tuple[int, bytes]
                    ) -> types.Content:
    changed = turn.model_copy(deep=True)
    for index, value in indices_and_values:
        (changed.parts or [])[index].thought_signature = value
    return changed


@pytest.mark.parametrize("dummy", DUMMIES)
async def test_the_dummy_is_accepted_by_default(client: genai.Client, dummy: bytes) -> None:
    user, model_turn = await first_turn(client)
    dummied = with_signatures(model_turn, (3, dummy), (4, dummy))
    ok = await client.aio.models.generate_content(model=PRO, contents=follow_up(user, dummied))
    assert final_images(ok)


async def test_with_the_switch_the_dummy_is_refused_as_a_missing_signature(refusing) -> None:
    _, sdk = refusing
    user, model_turn = await first_turn(sdk)
    for dummy in DUMMIES:
        with pytest.raises(errors.ClientError) as caught:
            await sdk.aio.models.generate_content(
                model=PRO, contents=follow_up(user, with_signatures(model_turn, (4, dummy))))
        assert caught.value.code == 400 and caught.value.status == "INVALID_ARGUMENT"
        assert caught.value.message == ("Image part is missing a thought_signature in "
                                         "content position 2, part position 5.")
    with pytest.raises(errors.ClientError) as caught:
        await sdk.aio.models.generate_content(
            model=PRO, contents=follow_up(user, with_signatures(model_turn, (3, DUMMIES[0]))))
    assert caught.value.message == ("Text part is missing a thought_signature in content "
                                     "position 2, part position 4.")


async def test_with_the_switch_real_signatures_are_still_checked_byte_for_byte(
        refusing) -> None:
    _, sdk = refusing
    user, model_turn = await first_turn(sdk)
    ok = await sdk.aio.models.generate_content(model=PRO, contents=follow_up(user, model_turn))
    assert final_images(ok)
    signature = (model_turn.parts or [])[4].thought_signature
    assert signature is not None
    corrupted = with_signatures(model_turn, (4, signature[:-1] + bytes([signature[-1] ^ 1])))
    with pytest.raises(errors.ClientError) as caught:
        await sdk.aio.models.generate_content(model=PRO, contents=follow_up(user, corrupted))
    assert caught.value.message == ("Corrupted thought signature in content position 2, "
                                     "part position 5.")


def test_the_command_line_has_the_switch() -> None:
    assert _parser().parse_args(["--refuse-dummy-signatures"]).refuse_dummy_signatures
    assert not _parser().parse_args([]).refuse_dummy_signatures
