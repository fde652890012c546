"""Platform records: upserts in updated_at order, status history, look-ups and ownership."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from core.errors import RecordConflict
from core.records import Change, Kind, Owner, find, normalise_email, normalise_phone, owned_records, owner_of, upsert
from core.storage.records import Disbursement
from tests.core.test_status_fixtures import DEFAULTS, NOW, seed, seed_payout


def _upsert(database, kind: Kind, reference: str, **fields):  # type: ignore[no-untyped-def]
    with database.transaction() as session:
        return upsert(session, kind, reference, {**DEFAULTS[kind], **fields})


def _payout(database, reference: str = "SP-PAY-1042") -> Disbursement:  # type: ignore[no-untyped-def]
    with database.sessions() as session:
        found = find(session, reference)
        assert isinstance(found, Disbursement)
        return found


def test_a_new_record_is_created_with_its_first_status_in_the_history(database) -> None:  # type: ignore[no-untyped-def]
    result = _upsert(database, Kind.DISBURSEMENT, "sp-pay-1042", updated_at=NOW)
    assert (result.result, result.reference, result.changes) == ("created", "SP-PAY-1042", ())
    payout = _payout(database)
    assert payout.net_amount == Decimal("4750.00") and payout.updated_at == NOW
    assert payout.history == [{"field": "status", "value": "scheduled", "at": NOW.isoformat()}]


def test_the_same_version_twice_changes_nothing(database) -> None:  # type: ignore[no-untyped-def]
    _upsert(database, Kind.DISBURSEMENT, "SP-PAY-1042", updated_at=NOW)
    again = _upsert(database, Kind.DISBURSEMENT, "SP-PAY-1042", updated_at=NOW)
    assert again.result == "unchanged" and again.changes == ()
    assert len(_payout(database).history) == 1


def test_a_newer_version_updates_and_records_the_status_change(database) -> None:  # type: ignore[no-untyped-def]
    _upsert(database, Kind.DISBURSEMENT, "SP-PAY-1042", updated_at=NOW)
    later = NOW + timedelta(hours=3)
    result = _upsert(database, Kind.DISBURSEMENT, "SP-PAY-1042", status="sent", paid_at=later, updated_at=later)
    assert result.result == "updated" and result.changes == (Change("status", "scheduled", "sent"),)
    payout = _payout(database)
    assert payout.status == "sent" and payout.paid_at == later
    assert [entry["value"] for entry in payout.history] == ["scheduled", "sent"]


def test_an_older_version_arriving_late_is_ignored(database) -> None:  # type: ignore[no-untyped-def]
    _upsert(database, Kind.DISBURSEMENT, "SP-PAY-1042", status="sent", updated_at=NOW)
    late = _upsert(
        database, Kind.DISBURSEMENT, "SP-PAY-1042", status="processing", updated_at=NOW - timedelta(minutes=5)
    )
    assert late.result == "ignored"
    assert _payout(database).status == "sent"


def test_a_different_body_with_the_same_updated_at_is_a_conflict(database) -> None:  # type: ignore[no-untyped-def]
    _upsert(database, Kind.DISBURSEMENT, "SP-PAY-1042", updated_at=NOW)
    with pytest.raises(RecordConflict):
        _upsert(database, Kind.DISBURSEMENT, "SP-PAY-1042", status="failed", updated_at=NOW)
    assert _payout(database).status == "scheduled"


def test_a_registration_reports_each_status_field_that_changed(database) -> None:  # type: ignore[no-untyped-def]
    _upsert(
        database,
        Kind.REGISTRATION,
        "SP-ENTRY-7",
        submission_status="not_submitted",
        fee_status="pending",
        updated_at=NOW,
    )
    result = _upsert(database, Kind.REGISTRATION, "SP-ENTRY-7", updated_at=NOW + timedelta(days=1))
    assert [change.field for change in result.changes] == ["submission_status", "fee_status"]


def test_times_compare_across_offsets(database) -> None:  # type: ignore[no-untyped-def]
    from zoneinfo import ZoneInfo

    _upsert(database, Kind.CAMPAIGN, "SP-CAMP-1042", updated_at=NOW)
    local = NOW.astimezone(ZoneInfo("Africa/Johannesburg"))  # the same instant, written +02:00
    assert _upsert(database, Kind.CAMPAIGN, "SP-CAMP-1042", updated_at=local).result == "unchanged"


def test_a_payout_belongs_to_its_campaigns_organiser_once_the_campaign_is_known(database) -> None:  # type: ignore[no-untyped-def]
    seed(database, Kind.DISBURSEMENT, "SP-PAY-1042")
    with database.sessions() as session:
        payout = find(session, "SP-PAY-1042")
        assert payout is not None and owner_of(session, payout) is None
    seed(database, Kind.CAMPAIGN, "SP-CAMP-1042")
    with database.sessions() as session:
        payout = find(session, "sp-pay-1042")
        assert payout is not None
        assert owner_of(session, payout) == Owner("Thandi Mokoena", "thandi@example.org", "+27825550142")


def test_owned_records_are_found_by_verified_phone_or_email(database) -> None:  # type: ignore[no-untyped-def]
    seed_payout(database)
    seed(database, Kind.CONTRIBUTION, "SP-DON-1")
    with database.sessions() as session:
        mine = owned_records(session, phones=[], emails=["thandi@example.org"])
        assert sorted(record.reference for record in mine) == ["SP-CAMP-1042", "SP-PAY-1042"]
        payouts = owned_records(session, phones=["+27825550142"], emails=[], kinds=[Kind.DISBURSEMENT])
        assert [record.reference for record in payouts] == ["SP-PAY-1042"]
        assert owned_records(session, phones=[], emails=[]) == []


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("+27 82 555 0142", "+27825550142"),
        ("whatsapp:+27825550142", "+27825550142"),
        ("082-555-0142", "+27825550142"),
        ("0027 (82) 555 0142", "+27825550142"),
        ("+44 7700 900123", "+447700900123"),
        ("555-0142", None),
        ("not a phone", None),
    ],
)
def test_phone_numbers_are_normalised_to_e164(given: str, expected: str | None) -> None:
    assert normalise_phone(given) == expected


def test_emails_are_lower_cased_and_checked() -> None:
    assert normalise_email(" Thandi@Example.ORG ") == "thandi@example.org"
    assert normalise_email("thandi at example") is None
