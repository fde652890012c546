"""The desk's settings: the policy's defaults, overrides, and one clear line for a wrong value."""

from __future__ import annotations

from datetime import timedelta

import pytest

import bots.plugins
from bots.channels import slack as slack_plugin
from bots.settings import load_settings
from bots.wiring import build, channel_report
from core.errors import ConfigurationError
from tests.fakes.knowledge import FakeKnowledge
from tests.fakes.slack_api import BOT_TOKEN, SIGNING_SECRET


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)


def test_defaults_follow_the_support_policy() -> None:
    settings = load_settings()
    targets = settings.response_targets
    assert targets["telegram"] == targets["whatsapp"] == targets["slack"] == targets["api"] == timedelta(minutes=2)
    assert (targets["x"], targets["sms"]) == (timedelta(hours=3), timedelta(hours=4))
    assert settings.weekly_report_time == "mon 08:00" and settings.slack_escalation_usergroup is None


def test_targets_can_be_set_per_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIRST_RESPONSE_TARGETS", '{"sms": "2h", "x": 90, "telegram": "45s"}')
    targets = load_settings().response_targets
    assert (targets["sms"], targets["x"], targets["telegram"]) == (
        timedelta(hours=2),
        timedelta(minutes=90),
        timedelta(seconds=45),
    )
    assert targets["whatsapp"] == timedelta(minutes=2)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("FIRST_RESPONSE_TARGETS", "4h", "FIRST_RESPONSE_TARGETS: must be a JSON object"),
        ("FIRST_RESPONSE_TARGETS", '{"sms": "soon"}', "FIRST_RESPONSE_TARGETS: sms: 'soon' is not a duration"),
        ("SLACK_AGENT_CHANNEL", "#support-desk", "SLACK_AGENT_CHANNEL: must be the channel's id"),
        ("SLACK_ESCALATION_USERGROUP", "@on-duty", "SLACK_ESCALATION_USERGROUP: must be a Slack user group id"),
        (
            "WHATSAPP_AGENT_REPLY_TEMPLATE",
            "agent_reply",
            "WHATSAPP_AGENT_REPLY_TEMPLATE: 'agent_reply' is not a Twilio Content SID",
        ),
        ("WEEKLY_REPORT_TIME", "monday", "WEEKLY_REPORT_TIME: expected a day and a time such as 'mon 08:00'"),
    ],
)
def test_a_wrong_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_the_desk_takes_handoffs_only_with_slack_live_and_an_agents_channel(
    monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    monkeypatch.setattr(bots.plugins, "PLUGIN_MODULES", ("bots.channels.slack",))
    slack = {"slack_bot_token": BOT_TOKEN, "slack_signing_secret": SIGNING_SECRET, "database_url": database_url}
    for extra, live in (({}, False), ({"slack_agent_channel": "C0AGENTDSK"}, True)):
        settings = load_settings(**slack, **extra)
        services = build(settings, knowledge=FakeKnowledge())
        try:
            assert services.desk.accepts_handoffs() is live
            report = {status.name: status for status in channel_report(settings, services.plugins)}
            assert report["desk"].live is live
            assert (
                ("C0AGENTDSK" in report["desk"].why) if live else ("SLACK_AGENT_CHANNEL not set" in report["desk"].why)
            )
            assert len(slack_plugin.plugin(settings).pollers) == int(live)  # the desk's loop, run by `run` and `worker`
        finally:
            services.database.dispose()
    no_slack = build(
        load_settings(database_url=database_url, slack_agent_channel="C0AGENTDSK"), knowledge=FakeKnowledge()
    )
    try:
        assert not no_slack.desk.accepts_handoffs()
    finally:
        no_slack.database.dispose()
