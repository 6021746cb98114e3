"""The price table and the policy's configuration, as pure values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.model import Author, Usage
from bot.options import FLASH, PRO
from bot.policy import Layer, Policy, Rules, Scope
from bot.prices import SOURCE_DATE, PriceTable

README = Path(__file__).resolve().parents[2] / "README.md"


def test_image_prices_match_googles_table():
    table = PriceTable()
    image_only = Usage(output_tokens=1120)
    assert table.cost(PRO, "1K", images=1, usage=image_only).total == 0.134
    assert table.cost(PRO, "2K", images=1, usage=image_only).total == 0.134
    assert table.cost(PRO, "4K", images=1, usage=Usage(output_tokens=2000)).total == 0.24
    assert table.cost(FLASH, None, images=1, usage=Usage(output_tokens=1290)).total == 0.039
    assert table.cost(PRO, None, images=1, usage=image_only).total == 0.134, "1K by default"


def test_input_text_thinking_and_batch():
    table = PriceTable()
    # A Pro reference image is 560 input tokens at $2 per million: $0.00112.
    one_reference = table.cost(PRO, "1K", images=0, usage=Usage(prompt_tokens=560))
    assert one_reference.input == pytest.approx(0.00112)
    # Text and thinking output are billed at $12 per million on Pro.
    usage = Usage(prompt_tokens=1000, output_tokens=1120 + 100, thought_tokens=400)
    cost = table.cost(PRO, "2K", images=1, usage=usage)
    assert cost.text_output == pytest.approx(500 * 12 / 1e6)
    assert cost.total == pytest.approx(0.134 + 1000 * 2 / 1e6 + 500 * 12 / 1e6)
    batch = table.cost(PRO, "2K", images=1, usage=usage, batch=True)
    assert batch.total == pytest.approx(cost.total / 2)
    assert table.cost(FLASH, None, images=1, usage=Usage(output_tokens=1290),
                      batch=True).total == pytest.approx(0.0195)


def test_estimates_and_unknown_models():
    table = PriceTable()
    assert 0.134 < table.estimate(PRO, None, reference_images=2) < 0.15
    assert 0.039 < table.estimate(FLASH, None, reference_images=0) < 0.045
    # A model missing from the table is never free: it is priced as the dearest.
    assert table.price("gemini-9-image") == table.price(PRO)


def test_prices_and_their_date_in_the_readme():
    text = README.read_text()
    assert SOURCE_DATE in text
    for figure in ("$0.039", "$0.134", "$0.24", "$0.0011"):
        assert figure in text


def test_price_table_from_toml(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[prices]\nsource_date = "2027-01-01"\nbatch_discount = 0.4\n'
                    '[prices.models."gemini-3-pro-image-preview"]\nimage = {"4K" = 0.3}\n')
    prices = load_settings(path, env={}).prices
    assert prices.source_date == "2027-01-01" and prices.batch_discount == 0.4
    assert prices.price(PRO).image_price("4K") == 0.3
    assert prices.price(PRO).input_per_million == 2.0
    path.write_text('[prices.models."gemini-9-image"]\nimage = {"1K" = 0.1}\n')
    with pytest.raises(ValueError, match="give all of"):
        load_settings(path, env={})


def test_policy_from_toml_and_environment(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        '[policy]\nallowed_models = ["flash", "pro"]\ndaily_images_per_user = 50\n'
        'timezone = "Europe/Berlin"\n'
        '[policy.workspaces."slack/T1"]\nmax_size = "2k"\n'
        '[policy.channels."discord/1/2"]\ndeny_roles = ["555"]\ndaily_budget_usd = 5\n')
    settings = load_settings(path, env={"IMAGEBOT_DAILY_IMAGES_PER_USER": "5",
                                        "IMAGEBOT_ADMINS": "slack:U1, discord:42",
                                        "IMAGEBOT_DAILY_BUDGET_USD": "20"})
    policy = settings.policy
    assert policy.timezone == "Europe/Berlin"
    assert policy.installation.allowed_models == (FLASH, PRO)
    assert policy.installation.daily_images_per_user == 5, "the environment wins"
    assert policy.installation.admins == ("slack:U1", "discord:42")
    assert policy.installation.daily_budget_usd == 20.0
    assert policy.rules(Scope("slack", "T1")).max_size == "2K"
    assert policy.rules(Scope("discord", "1", "2")) == Rules(deny_roles=("555",),
                                                             daily_budget_usd=5.0)


@pytest.mark.parametrize("text, problem", [
    ('[policy]\nmax_size = "8K"\n', "max_size"),
    ('[policy]\nbogus = 1\n', "bogus"),
    ('[policy.channels."slack/T1"]\nsearch = false\n', "not a channel"),
    ('[policy]\ntimezone = "Mars/Olympus"\n', "time zone"),
    ('[policy]\ndaily_images_per_user = -1\n', "at least 0"),
])
def test_bad_policy_is_a_configuration_error(tmp_path, text, problem):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=problem):
        load_settings(path, env={})


def layered(*rules: tuple[Scope, Rules]) -> Policy:
    return Policy(rules[-1][0], tuple(Layer(s, r) for s, r in rules))


def test_limits_narrow_and_defaults_override():
    here = Scope("slack", "T1", "C1")
    policy = layered((Scope(), Rules(allowed_models=(FLASH, PRO), max_size="4K",
                                     default_model=PRO, search=True)),
                     (Scope("slack", "T1"), Rules(max_size="2K", search=False)),
                     (here, Rules(allowed_models=(PRO,), max_size="4K", default_model=FLASH)))
    assert policy.allowed_models() == {PRO}
    assert policy.max_size() == "2K", "a channel cannot loosen its workspace"
    assert not policy.allows("search") and policy.allows("batch")
    assert policy.defaults().model == FLASH, "the most specific default wins"


def test_admins_by_id_role_and_platform():
    policy = layered((Scope(), Rules(admins=("slack:U1",))),
                     (Scope("discord", "G"), Rules(admin_roles=("77",))),
                     (Scope("discord", "G", "C"), Rules()))
    assert not policy.is_admin(Author("U1"))
    assert policy.is_admin(Author("5", roles=("77",)))
    assert policy.is_admin(Author("6"), workspace_admin=True)
    assert not policy.is_admin(Author("6"))


def test_quotas_count_inside_the_scope_that_sets_them():
    here = Scope("slack", "T1", "C1")
    policy = layered((Scope(), Rules(daily_images_per_user=50, daily_budget_usd=20)),
                     (Scope("slack", "T1"), Rules(daily_images_per_channel=10)),
                     (here, Rules(daily_images_per_user=5)))
    quotas = policy.quotas("U1")
    assert [(q.kind, q.limit, q.counts.id, q.user) for q in quotas] == [
        ("user_images", 50, "slack/", "U1"), ("user_images", 5, "slack/T1/C1", "U1"),
        ("channel_images", 10, "slack/T1/C1", None), ("budget", 20, "*", None)]


def test_the_documented_policy_example_is_valid(tmp_path):
    """Every commented rule of the example file's policy section, uncommented, loads."""
    example = Path(__file__).resolve().parents[2] / "config" / "imagebot.example.toml"
    text = example.read_text()
    section = text[text.index("# --- Policy"):text.index("# --- Prices")]
    rule = re.compile(r"^# (\[policy[^\]]*\]\s*$|[a-z_]+ = )")
    lines = [line[2:] if rule.match(line) else line for line in section.splitlines()]
    path = tmp_path / "c.toml"
    path.write_text("\n".join(lines))
    settings = load_settings(path, env={})
    assert settings.policy.installation.allowed_models == (FLASH, PRO)
    assert settings.policy.rules(Scope("slack", "T0123ABCD", "C0RANDOM")).allowed_models == \
        (FLASH,)
    assert settings.policy.installation.contact == "#design-ops"


def test_batch_requests_follow_the_batch_rule():
    from bot.admission import enforce
    from bot.config import DEFAULT_MODELS
    from bot.errors import PolicyError
    from bot.options import OptionInput, resolve
    from bot.planning import PlanLimits, TurnPlan

    limits = PlanLimits(defaults=OptionInput(model="pro"), models=DEFAULT_MODELS,
                        max_attachment_bytes=1)
    plan = TurnPlan(prompt="a cat", given=OptionInput(),
                    options=resolve(OptionInput(), OptionInput(), limits.defaults,
                                    limits.models), attachments=())
    here = Scope("slack", "T1", "C1")
    policy = layered((Scope(), Rules()), (Scope("slack", "T1"), Rules(batch=False)),
                     (here, Rules(batch=True)))
    assert enforce(policy, plan, OptionInput(), limits) == plan
    with pytest.raises(PolicyError) as refused:
        enforce(policy, plan, OptionInput(), limits, batch=True)
    assert refused.value.rule == "batch" and "this workspace" in refused.value.user_message
