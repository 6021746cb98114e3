"""Batch jobs in the core: reading prompts, planning, submitting inline and as a JSONL file,
polling on the stand-in's clock, results with failures and safety blocks, recovery after a
crash between create and store, cancel."""

from __future__ import annotations

import json

import pytest

from bot.batch import (
    BatchSubmission,
    read_prompts,
    summary_text,
)
from bot.errors import OptionError, PromptError
from bot.model import Attachment, Author, ThreadKey
from bot.options import FLASH, PRO, OptionInput
from bot.prices import cost
from offline_gemini import OfflineGemini
from offline_gemini.faults import Fault
from tests import corpus

KEY = ThreadKey("cli", "", "", "campaign")
ALICE = Author("cli:alice", "alice")


def submission(text: str = "", *files: tuple[str, bytes], refs=(), **options) -> BatchSubmission:
    return BatchSubmission(key=KEY, author=ALICE, text=text, files=tuple(files),
                           attachments=tuple(Attachment.from_bytes(n, d) for n, d in refs),
                           options=OptionInput(**options))


def creates(stand_in: OfflineGemini) -> list:
    return [r for r in stand_in.requests if r.path.endswith(":batchGenerateContent")]


def test_reading_prompts_from_text_and_files() -> None:
    text = "--ar 16:9 --model flash\n# a comment\n\na red fox\na blue bird --ar 1:1\n"
    csv_file = ("p.csv", b"prompt,ar,search\n\"a cat, sitting\",3:4,no\n,,\na dog,,\n")
    jsonl = ("p.jsonl", b'{"prompt": "a hat", "size": "2K"}\n"a plain string"\n')
    lines, shared = read_prompts(text, [csv_file, jsonl])
    assert shared == OptionInput(aspect_ratio="16:9", model="flash")
    assert [(line.where, line.text) for line in lines] == [
        ("line 4", "a red fox"), ("line 5", "a blue bird --ar 1:1"),
        ("p.csv row 2", "a cat, sitting"), ("p.csv row 4", "a dog"),
        ("p.jsonl line 1", "a hat"), ("p.jsonl line 2", "a plain string")]
    assert lines[2].options == OptionInput(aspect_ratio="3:4", search=False)
    assert lines[4].options == OptionInput(size="2K")
    headless, _ = read_prompts("", [("p.csv", b"first prompt\nsecond prompt\n")])
    assert [line.text for line in headless] == ["first prompt", "second prompt"]
    with pytest.raises(PromptError, match="p.jsonl line 2 is not JSON"):
        read_prompts("", [("p.jsonl", b'"ok"\n{nope\n')])
    with pytest.raises(PromptError, match="is not a prompt file"):
        read_prompts("", [("p.pdf", b"%PDF")])


async def test_plan_refuses_before_anything_is_sent(core, stand_in) -> None:
    batches = core.service.batches
    for text, error, words in [
        ("", PromptError, "No prompts"),
        ("a\nb --model pro", OptionError, "runs on one model"),
        ("a\nb --ar 7:3", OptionError, "Prompt 2 (line 2): `7:3` is not a supported"),
        ("a --model imagen-4", OptionError, "has no Batch API"),
        ("a --count 2", OptionError, "`--count` does not apply"),
        ("\n".join(f"p{i}" for i in range(501)), PromptError, "at most 500"),
    ]:
        with pytest.raises(error) as caught:
            await batches.submit(submission(text, model="flash"))
        assert words in caught.value.user_message
    assert creates(stand_in) == [] and await batches.jobs() == []


async def test_inline_batch_end_to_end(core, stand_in: OfflineGemini) -> None:
    batches = core.service.batches
    text = "\n".join(["--model flash --ar 16:9", "a red fox", "a blue bird --ar 1:1",
                      "something unsafe", "a failing one"])
    job, plan = await batches.submit(submission(text, refs=[("style.png", corpus.png())]))
    assert plan.estimate() == pytest.approx(4 * 0.0195)
    assert job.state == "pending" and job.name.startswith("batches/") and job.total == 4
    assert job.display_name == f"imagebot-batch-{job.id}"
    create = creates(stand_in)[-1]
    assert create.path == f"/v1beta/models/{FLASH}:batchGenerateContent"
    sent = create.body["batch"]["inputConfig"]["requests"]["requests"]
    assert [r["metadata"]["key"] for r in sent] == ["1", "2", "3", "4"]
    first = sent[0]["request"]
    assert first["contents"][0]["parts"][0] == {"text": "a red fox"}
    file_part = first["contents"][0]["parts"][1]
    assert (file_part.get("fileData") or file_part["file_data"])["file_uri"].startswith(
        stand_in.base_url), "references go up once through the Files API, by full URI"
    assert first["generationConfig"]["imageConfig"] == {"aspectRatio": "16:9"}
    assert sent[1]["request"]["generationConfig"]["imageConfig"] == {"aspectRatio": "1:1"}
    assert len(stand_in.files.page(100, "")[0]) == 1

    stand_in.batches.faults_by_key.update({"3": Fault("finish", reason="IMAGE_SAFETY"),
                                           "4": Fault("status", code=500)})
    assert (await batches.refresh(job.id)).state == "pending"
    stand_in.clock.advance(minutes=2)
    assert (await batches.refresh(job.id)).state == "running"
    stand_in.clock.advance(minutes=9)
    done = await batches.refresh(job.id)
    assert done.state == "succeeded" and done.results_at is not None
    assert done.counts == {"done": 2, "blocked": 1, "failed": 1} and done.images == 2
    lines = await batches.lines(job.id)
    assert [line.status for line in lines] == ["done", "done", "blocked", "failed"]
    assert (lines[0].images[0].width, lines[0].images[0].height) == (1344, 768)
    assert await core.service.image(lines[0].images[0].sha256)
    assert "image-safety" in lines[2].error and "internal error" in lines[3].error
    prompt_tokens = sum(line.usage.prompt_tokens for line in lines[:2])
    output_tokens = sum(line.usage.output_tokens for line in lines[:2])
    assert done.cost == pytest.approx(cost(FLASH, None, images=2, prompt_tokens=prompt_tokens,
                                           output_tokens=output_tokens, batch=True),
                                      abs=1e-5)  # each line's cost is rounded to 1e-6 $
    summary = summary_text(done, "Nano Banana")
    assert summary.startswith(f"Batch {job.id[:8]} finished: 4 prompts on Nano Banana: "
                              "2 done, 1 failed, 1 blocked · 2 images · $0.04 at batch price")
    usage = await core.service.usage(KEY)
    assert [row["turn_id"] for row in usage] == [f"batch:{job.id}:1", f"batch:{job.id}:2"]
    assert await batches.undelivered() == [done]


async def test_a_big_batch_goes_up_as_a_jsonl_file(core_factory, stand_in) -> None:
    async with core_factory(batch_inline_limit=1000) as core:
        batches = core.service.batches
        job, _ = await batches.submit(submission(
            "\n".join(f"poster {n} --size 2k" for n in range(1, 21)), model="pro"))
        assert job.input == "file"
        create = creates(stand_in)[-1]
        file_name = create.body["batch"]["inputConfig"]["fileName"]
        sent = stand_in.files.get(file_name.removeprefix("files/"))
        lines = [json.loads(line) for line in sent.data.decode().splitlines()]
        assert [line["key"] for line in lines] == [str(n) for n in range(1, 21)]
        assert lines[0]["request"]["generationConfig"]["imageConfig"] == {"imageSize": "2K"}
        stand_in.clock.advance(minutes=11)
        done = await batches.refresh(job.id)
        assert done.counts == {"done": 20} and done.images == 20
        assert done.cost == pytest.approx(20 * 0.067, rel=0.05)
        results = await batches.lines(job.id)
        assert results[19].prompt == "poster 20" and (
            results[19].images[0].width, results[19].images[0].height) == (2048, 2048)


async def test_a_crash_between_create_and_store_never_submits_twice(core, stand_in) -> None:
    batches = core.service.batches
    # The submitting process stored the job, created it at Gemini, and died before it
    # could store the job's name: the row says "creating" and its lease has run out.
    job, _ = await batches.submit(submission("a\nb", model="flash"))
    name = job.name
    await core.service.store.db.execute(
        "UPDATE batch_jobs SET state='creating', name='', lease_until=0 WHERE id=?", (job.id,))
    assert len(creates(stand_in)) == 1
    await batches.recover()
    adopted = await batches.job(job.id)
    assert adopted.name == name and adopted.state == "pending"
    assert len(creates(stand_in)) == 1, "found by display name, not created again"

    # Died before the create itself: recovery creates it, once.
    other, _ = await batches.submit(submission("c", model="flash"))
    del stand_in.batches.jobs[other.name.removeprefix("batches/")]
    await core.service.store.db.execute(
        "UPDATE batch_jobs SET state='creating', name='', lease_until=0 WHERE id=?",
        (other.id,))
    created = await batches.refresh(other.id)  # `imagebot batch status` takes it up too
    await batches.recover()
    created = await batches.job(other.id)
    assert created.state == "pending" and created.name and created.name != other.name
    assert len(creates(stand_in)) == 3


async def test_cancel_and_lookups(core, stand_in) -> None:
    batches = core.service.batches
    job, _ = await batches.submit(submission("a\nb", model="flash"))
    assert (await batches.job(job.id[:6])).id == job.id
    assert (await batches.job(job.name)).id == job.id
    cancelled = await batches.cancel(job.id)
    assert cancelled.state == "cancelled" and cancelled.counts == {"not_run": 2}
    assert "was cancelled" in summary_text(cancelled, "Nano Banana")
    with pytest.raises(OptionError, match="already cancelled"):
        await batches.cancel(job.id)


async def test_pro_batch_costs_at_batch_price(core, stand_in) -> None:
    batches = core.service.batches
    job, plan = await batches.submit(submission("a\nb --size 4k", model=PRO))
    assert plan.estimate() == pytest.approx(0.067 + 0.12)
    stand_in.clock.advance(minutes=11)
    done = await batches.refresh(job.id)
    lines = await batches.lines(job.id)
    expected = sum(cost(PRO, size, images=1, prompt_tokens=line.usage.prompt_tokens,
                        thought_tokens=line.usage.thought_tokens,
                        output_tokens=line.usage.output_tokens, batch=True)
                   for size, line in zip((None, "4K"), lines, strict=True))
    assert done.cost == pytest.approx(expected)


async def test_a_batch_gemini_never_finishes_expires(core, stand_in) -> None:
    from datetime import timedelta

    stand_in.batches.turnaround = timedelta(hours=72)
    job, _ = await core.service.batches.submit(submission("a\nb", model="flash"))
    stand_in.clock.advance(hours=49)
    expired = await core.service.batches.refresh(job.id)
    assert expired.state == "expired" and expired.counts == {"not_run": 2}
    assert expired.cost == 0 and await core.service.usage(KEY) == []
    assert summary_text(expired, "Nano Banana").startswith(
        f"Batch {job.short} expired after 48 hours: 2 prompts on Nano Banana: 0 done, 0 failed, "
        "0 blocked, 2 not run · 0 images · $0.00 at batch price")
    assert "not charged" in expired.error


async def test_a_policy_without_batch_refuses_before_anything_is_stored(core_factory,
                                                                        stand_in) -> None:
    from bot.audit import REFUSED_POLICY
    from bot.errors import PolicyError

    async with core_factory(policy={"batch": False}) as core:
        with pytest.raises(PolicyError, match="batch") as refused:
            await core.service.batches.submit(submission("a red bike\na blue bike"))
        assert refused.value.rule == "batch"
        assert creates(stand_in) == [] and await core.service.batches.jobs_db.jobs() == []
        assert len(await core.service.audit_log(actions=[REFUSED_POLICY])) == 1
    async with core_factory(policy={"deny_users": ["cli:alice"]}) as core:
        with pytest.raises(PolicyError, match="deny"):
            await core.service.batches.submit(submission("a red bike"))
        assert creates(stand_in) == []


async def test_a_finished_batch_is_in_the_cost_ledger_at_batch_price(core, stand_in) -> None:
    batches = core.service.batches
    job, _ = await batches.submit(submission("a\nb --size 4k", model=PRO))
    stand_in.clock.advance(minutes=11)
    done = await batches.refresh(job.id)
    rows = await core.service.store.db.execute_fetchall(
        "SELECT kind, batch, images, cost_usd, state FROM ledger ORDER BY id")
    assert [(r[0], r[1], r[2], r[4]) for r in rows] == [("batch", 1, 1, "committed")] * 2
    assert sum(r[3] for r in rows) == pytest.approx(done.cost)
