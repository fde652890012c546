"""Settings: defaults that start with no configuration, and one clear line for a wrong value."""

from __future__ import annotations

import pytest

from bots.settings import load_settings
from bots.wiring import channel_report
from core.errors import ConfigurationError


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in ("DATABASE_URL", "SUPPORT_TIMEZONE", "SUPPORT_HOURS", "PUBLIC_BASE_URL", "TELEGRAM_BOT_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def test_no_configuration_at_all_gives_working_defaults() -> None:
    settings = load_settings()
    assert settings.database_url == "sqlite:///./saypro.db"
    assert settings.public_base_url == "http://127.0.0.1:8000"
    assert settings.hours.days == frozenset(range(5)) and settings.saypro_api_key is None


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DATABASE_URL", "not a url", "DATABASE_URL: not a SQLAlchemy database URL"),
        ("DATABASE_URL", "mysql://u@h/db", "DATABASE_URL: mysql is not supported"),
        ("SUPPORT_TIMEZONE", "Africa/Atlantis", "SUPPORT_TIMEZONE: unknown timezone 'Africa/Atlantis'"),
        ("SUPPORT_HOURS", "always", "SUPPORT_HOURS: expected a form like 'mon-fri 08:00-17:00'"),
        ("PUBLIC_BASE_URL", "bot.example.org", "PUBLIC_BASE_URL: must be an http(s) URL"),
        ("X_POLL_SECONDS", "often", "X_POLL_SECONDS:"),
    ],
)
def test_a_wrong_value_names_the_variable_in_one_line(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_a_dotenv_file_is_read(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / ".env").write_text("SAYPRO_API_KEY=from-dotenv\n")
    assert load_settings().saypro_api_key.get_secret_value() == "from-dotenv"  # type: ignore[union-attr]


def test_the_start_up_report_says_which_channels_are_off_and_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:abc")
    report = {status.name: status for status in channel_report(load_settings())}
    assert report["api"].live
    assert not report["telegram"].live and report["telegram"].why.startswith("TELEGRAM_WEBHOOK_SECRET not set")
    assert "TWILIO_ACCOUNT_SID" in report["sms"].why
