"""Schemathesis against the dashboard's own ``/openapi.json``, over a storage full of hostile content.

Every operation of the JSON API gets requests that Schemathesis generates from the schema, valid
ones and invalid ones (``GenerationMode.POSITIVE`` and ``NEGATIVE``), plus generated requests
aimed at the studies that exist (study names with markup, ``/``, ``..``, unicode; trial numbers
0-2; the recorded artifact and export names), so the fuzzing reaches the code that reads real
rows instead of stopping at "no study named ...". Each response must not be a server error and
must conform to the schema (status code documented, content type, body schema, headers).

Generation is derandomised (Hypothesis ``derandomize=True``, no example database), so every run
sends the same requests. The requests are counted: at least 500 in all.
"""

from __future__ import annotations

import collections
from typing import Any, Callable

import pytest

from tests.dashboard.conftest import HOSTILE_STUDIES, IMG, SCRIPT

TOKEN = "fuzz-token-0123456789"
#: Generated requests per operation: without a token (the main run) and with one.
EXAMPLES_OPEN = 70
EXAMPLES_TOKEN = 12

# Path parameters that point at rows that exist (trial numbers, recorded artifact/export names)
# and at a few that do not.
_NUMBERS = (0, 1, 2, 99)
_ARTIFACTS = ("best.pt", f"{IMG}.pt", "sub dir/%2e%2e.pt", "../best.pt", "/etc/passwd")
_EXPORT_FILES = (f"{IMG}.onnx", "../../etc/passwd", "hostile.db")


def _known_path_parameters(names: list[str]) -> list[dict[str, Any]]:
    """Fixed path parameters that reach existing studies, trials and files (the rest is generated)."""
    fixed: list[dict[str, Any]] = []
    for name in HOSTILE_STUDIES:
        if "name" not in names:
            break
        params: dict[str, Any] = {"name": name}
        if "number" in names:
            for number in _NUMBERS[:2] if ("artifact" in names or "filename" in names) else _NUMBERS:
                with_number = {**params, "number": number}
                if "artifact" in names:
                    fixed += [{**with_number, "artifact": a} for a in _ARTIFACTS]
                elif "filename" in names:
                    fixed += [{**with_number, "index": 0, "filename": f} for f in _EXPORT_FILES]
                else:
                    fixed.append(with_number)
        else:
            fixed.append(params)
    return fixed


def _fuzz(app: Any, *, examples: int, headers: dict[str, str], on_response: Callable[[Any, Any], None],
          validate: bool) -> collections.Counter[str]:
    """Run generated requests against every operation; returns how many each operation received."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
    from schemathesis import GenerationMode
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=headers)
    sent: collections.Counter[str] = collections.Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10, [op.label for op in operations]
    for operation in operations:
        names = [p.name for p in operation.path_parameters]
        # Where the schema documents 400, a schema-valid value may still be refused by meaning (a
        # state that does not exist, a sort key or objective beyond the study's): that is the
        # documented answer, not a rejected valid request.
        excluded = [positive_data_acceptance] if "400" in operation.responses.status_codes else []
        strategies = [operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)]
        strategies += [operation.as_strategy(path_parameters=fixed) for fixed in _known_path_parameters(names)]
        # Aim the table's sort and filter at the hostile parameter names too.
        if operation.path.endswith("/trials"):
            for query in ({"sort": f"param:{SCRIPT}"}, {"param": [f"{SCRIPT}={IMG}"]}, {"param": ["a/b ..:1:5"]}):
                strategies += [operation.as_strategy(path_parameters={"name": n}, query=query) for n in HOSTILE_STUDIES[:3]]

        @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                  phases=[Phase.explicit, Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
        @given(case=st.one_of(strategies))
        def run(case: Any) -> None:
            response = case.call(headers=headers)
            sent[operation.label] += 1
            assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code}"
            on_response(case, response)
            if validate:
                case.validate_response(response, headers=headers, excluded_checks=excluded)

        run()
    return sent


@pytest.fixture(scope="module")
def hostile_app(hostile_url: str) -> Any:
    from tuner.dashboard import create_app

    return create_app(hostile_url)


def test_fuzzed_requests_never_fail_on_the_server_and_match_the_schema(hostile_app: Any) -> None:
    statuses: collections.Counter[int] = collections.Counter()
    sent = _fuzz(hostile_app, examples=EXAMPLES_OPEN, headers={}, validate=True,
                 on_response=lambda case, response: statuses.update([response.status_code]))
    total = sum(sent.values())
    print(f"\nschemathesis sent {total} requests without a token: {dict(sent)}; statuses {dict(statuses)}")
    assert total >= 500
    assert statuses[200] >= 100, "the fuzzing should reach existing studies and trials, not only 404s"


def test_fuzzed_requests_with_a_token_set_need_it(hostile_url: str) -> None:
    """With the token: requests that carry it behave as above; the same requests without it get 401
    and no data."""
    from starlette.testclient import TestClient

    from tuner.dashboard import create_app

    app = create_app(hostile_url, token=TOKEN)
    refused: list[int] = []
    with TestClient(app) as bare:

        def without_token(case: Any, response: Any) -> None:
            res = bare.request(case.method, case.formatted_path, params=case.query)
            assert res.status_code == 401, (case.formatted_path, res.status_code)
            assert res.json() == {"detail": "a valid token is required: send 'Authorization: Bearer TOKEN'"}
            refused.append(res.status_code)

        sent = _fuzz(app, examples=EXAMPLES_TOKEN, headers={"Authorization": f"Bearer {TOKEN}"}, validate=True,
                     on_response=without_token)
    total = sum(sent.values())
    print(f"\nschemathesis sent {total} requests with the token (and each again without it: all 401)")
    assert len(refused) == total >= 100
