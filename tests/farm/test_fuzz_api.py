"""Schemathesis against the live API's OpenAPI spec: no 5xx, every response matches its schema."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

EXAMPLES = 20  #: per operation


#: endless by design (server-sent events); tests/farm/test_auth.py reads it
STREAMS = {"GET /events"}


def test_the_api_never_errors_and_keeps_its_contract(api, tokens):
    schema = schemathesis.openapi.from_url(f"{api}/openapi.json")
    operator = {"Authorization": f"Bearer {tokens['olga']}"}  # the widest role: every operation runs
    counts: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        if label in STREAMS:
            continue
        counts[label] = 0

        def make_check(label=label, operation=operation):
            @given(case=operation.as_strategy())
            @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def check(case):
                counts[label] += 1
                # schema-valid but refused on purpose (an empty upload, a take the engine rejects)
                case.call_and_validate(headers=operator, excluded_checks=[positive_data_acceptance])

            return check

        make_check()()
    assert len(counts) >= 12 and all(n > 0 for n in counts.values()), counts
    print(f"schemathesis: {sum(counts.values())} requests over {len(counts)} operations")
