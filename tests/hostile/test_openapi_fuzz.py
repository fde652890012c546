"""The platform API's own OpenAPI document, fuzzed with schemathesis: whatever is sent, never a 5xx.

Every operation FastAPI documents (the messages and record routes, health, metrics, and the
provider webhooks) is called with generated paths, queries and bodies, valid for the schema
and deliberately invalid, with the API key and without it. The examples per operation are few
(EXAMPLES), so the file runs in well under a minute.

(schemathesis's own pytest plugin is not used: its lazy `from_fixture` schemas fail on
pytest 9, and the app needs this test's fresh database, so the schema is loaded in the test.)
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from starlette.testclient import TestClient

from bots.web import create_app
from bots.wiring import Services
from tests.hostile.conftest import API_KEY, all_channels
from tests.hostile.strategies import any_text, json_values

EXAMPLES = 25
AUTH = {"Authorization": f"Bearer {API_KEY}"}
# The body limit as in production, but no per-source limits: every call here comes from one test
# client, and a 429 would hide what the route itself answers (tests/hostile/test_ratelimit.py).
UNLIMITED = {"source_refusals_per_minute": 10**9, "platform_api_calls_per_minute": 0}
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)


@pytest.mark.parametrize("mode", MODES, ids=[mode.value for mode in MODES])
def test_no_request_gets_a_server_error(database_url: str, mode) -> None:  # type: ignore[no-untyped-def]
    services = all_channels(database_url, **UNLIMITED)
    app = create_app(services, background=False)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {"POST /api/v1/messages", "PUT /api/v1/campaigns/{reference}"} <= {op.label for op in operations}
    fuzzed = []
    try:
        for operation in operations:
            try:
                fuzz(operation, mode)
            except Unsatisfiable:
                # GET /healthz and GET /metrics take nothing at all: nothing about them can be invalid.
                assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label
                continue
            fuzzed.append(operation.label)
    finally:
        services.database.dispose()
    assert "POST /api/v1/messages" in fuzzed and "PUT /api/v1/disbursements/{reference}" in fuzzed


def fuzz(operation, mode) -> None:  # type: ignore[no-untyped-def]
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
    )
    def no_server_error(case) -> None:  # type: ignore[no-untyped-def]
        for headers in ({"Authorization": f"Bearer {API_KEY}"}, {}):
            response = case.call(headers=headers)
            assert response.status_code < 500, (
                f"{operation.label}: {response.status_code} for {case.as_curl_command(headers=headers)}: {response.text[:300]}"
            )

    no_server_error()


# Bodies that pass validation reach the database: real records with one field at a time
# replaced by any text at all (names, titles and reasons accept free text) or any JSON.
RECORDS = {
    "campaigns": {
        "title": "Clean Water",
        "status": "ended",
        "currency": "ZAR",
        "amount_raised": "5000.00",
        "organiser": {"name": "Thandi", "email": "thandi@example.org", "phone": "+27825550142"},
        "updated_at": "2026-12-01T10:00:00+02:00",
    },
    "disbursements": {
        "campaign": "SP-CAMP-1042",
        "amount": "5000.00",
        "fees": "250.00",
        "currency": "ZAR",
        "method": "bank_transfer",
        "destination_last4": "4821",
        "status": "on_hold",
        "failure_reason": "KYC",
        "kyc_documents": ["ID"],
        "updated_at": "2026-12-02T09:00:00+02:00",
    },
    "contributions": {
        "campaign": "SP-CAMP-1042",
        "amount": "500",
        "currency": "ZAR",
        "status": "succeeded",
        "backer": {"name": "Lerato", "email": "lerato@example.org"},
        "updated_at": "2026-12-02T09:00:00Z",
    },
    "registrations": {
        "contest": "Youth Challenge",
        "status": "confirmed",
        "fee_status": "paid",
        "submission_status": "received",
        "participant": {"name": "Ayanda", "phone": "0830000001"},
        "updated_at": "2026-12-02T09:00:00Z",
    },
}


def one_field_replaced(body: dict) -> st.SearchStrategy[dict]:  # type: ignore[type-arg]
    paths = [(key,) for key in body] + [
        (key, inner) for key, value in body.items() if isinstance(value, dict) for inner in value
    ]

    def replace(path: tuple[str, ...], value: object) -> dict:  # type: ignore[type-arg]
        changed = json.loads(json.dumps(body))
        target = changed
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return changed

    return st.builds(replace, st.sampled_from(paths), any_text | json_values)


@pytest.mark.parametrize("kind", sorted(RECORDS))
def test_record_bodies_one_field_off_never_get_a_server_error(database_url: str, kind: str) -> None:
    services: Services = all_channels(database_url, **UNLIMITED)
    app = create_app(services, background=False)
    references = st.text(st.sampled_from("ABCXYZ0123456789-"), min_size=3, max_size=20).map(lambda r: "SP-" + r)

    @given(body=one_field_replaced(RECORDS[kind]), reference=references)
    @settings(max_examples=60, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    def never_5xx(body: dict, reference: str) -> None:  # type: ignore[type-arg]
        with TestClient(app) as client:
            response = client.put(
                f"/api/v1/{kind}/{reference}",
                content=json.dumps(body),
                headers={**AUTH, "Content-Type": "application/json"},
            )
        assert response.status_code < 500, f"{response.status_code} for {body!r}: {response.text[:300]}"

    try:
        never_5xx()
    finally:
        services.database.dispose()


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("campaigns", ("title",)),
        ("campaigns", ("organiser", "name")),
        ("disbursements", ("failure_reason",)),
        ("disbursements", ("kyc_documents",)),
        ("contributions", ("backer", "name")),
        ("registrations", ("contest",)),
    ],
)
def test_a_nul_in_a_record_text_is_a_422(database_url: str, kind: str, path: tuple[str, ...]) -> None:
    """PostgreSQL cannot store NUL in text: refused as invalid, rather than a 503 from the database."""
    body = json.loads(json.dumps(RECORDS[kind]))
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = ["ID\x00"] if path[-1] == "kyc_documents" else "Clean\x00Water"
    services = all_channels(database_url)
    try:
        with TestClient(create_app(services, background=False)) as client:
            response = client.put(f"/api/v1/{kind}/SP-X-1", json=body, headers=AUTH)
        assert response.status_code == 422 and "control characters" in response.text
    finally:
        services.database.dispose()
