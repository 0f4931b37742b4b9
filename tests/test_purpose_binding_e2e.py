"""Purpose binding end to end, through the demo sidecar: each rule of rego/redact.rego that reads
the token's purpose or clearance, seen from a client.

- an operation (root field) listing purposes is refused (403, no upstream call) for others;
- a field listing purposes is nulled for others (the restricted tier needs a listed purpose too);
- the `clearance` claim clears the high tier as the role high-clearance does.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.sidecar_env import RecordingUpstream, Sidecar, demo_token

COHORT = '{ cohort(groupBy: ["city"]) { city count } }'
INFORMANT = "{ people(first: 60) { cases { reference informant } } }"
SSN = '{ person(id: "P-00001") { name ssn } }'


def cases(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [case for person in body["data"]["people"] for case in person["cases"]]


def redacted(body: dict[str, Any]) -> set[str]:
    return {
        e["extensions"]["coordinate"]
        for e in body.get("errors", [])
        if e.get("extensions", {}).get("code") == "REDACTED"
    }


@pytest.mark.parametrize("purpose", ["analytics", "investigation", "export"])
def test_an_operation_serves_the_purposes_it_lists(
    demo_sidecar: Sidecar, upstream: RecordingUpstream, purpose: str
) -> None:
    reply = demo_sidecar.query(COHORT, demo_token("ana", ["analyst"], purpose))
    assert reply.status == 200, reply.raw
    assert reply.json["data"]["cohort"], reply.raw


@pytest.mark.parametrize("purpose", ["administration", "audit", "support"])
def test_an_operation_is_refused_for_other_purposes(
    demo_sidecar: Sidecar, upstream: RecordingUpstream, purpose: str
) -> None:
    before = upstream.count()
    reply = demo_sidecar.query(COHORT, demo_token("ana", ["analyst", "admin"], purpose))
    assert reply.status == 403, reply.raw
    assert reply.json["data"] is None
    assert reply.json["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert upstream.count() == before  # refused before anything is forwarded


def test_a_purpose_bound_field_is_nulled_for_other_purposes(
    demo_sidecar: Sidecar, upstream: RecordingUpstream
) -> None:
    cleared = ["restricted-clearance", "investigator"]
    served = demo_sidecar.query(INFORMANT, demo_token("rita", cleared, "investigation"))
    assert served.status == 200, served.raw
    kept = cases(served.json)
    assert any(case["informant"] is not None for case in kept), served.raw
    assert "Case.informant" not in redacted(served.json)
    for purpose in ("analytics", "support", "audit"):
        reply = demo_sidecar.query(INFORMANT, demo_token("rita", cleared, purpose))
        assert reply.status == 200, reply.raw
        assert all(case["informant"] is None for case in cases(reply.json))
        assert "Case.informant" in redacted(reply.json)
        # The rest of each case is served as usual.
        assert [c["reference"] for c in cases(reply.json)] == [c["reference"] for c in kept]


@pytest.mark.parametrize(
    ("clearance", "sees_ssn"),
    [(None, False), ("low", False), ("medium", False), ("high", True), ("restricted", True)],
)
def test_the_clearance_claim_clears_the_high_tier(
    demo_sidecar: Sidecar, clearance: str | None, sees_ssn: bool
) -> None:
    claims = {"clearance": clearance} if clearance else {}
    reply = demo_sidecar.query(SSN, demo_token("ivan", ["investigator"], "investigation", **claims))
    assert reply.status == 200, reply.raw
    ssn = reply.json["data"]["person"]["ssn"]
    assert (ssn is not None) is sees_ssn
    assert ("Person.ssn" in redacted(reply.json)) is not sees_ssn


def test_the_restricted_clearance_claim_still_needs_a_listed_purpose(
    demo_sidecar: Sidecar,
) -> None:
    token = demo_token("rita", ["investigator"], "investigation", clearance="restricted")
    informants = [c["informant"] for c in cases(demo_sidecar.query(INFORMANT, token).json)]
    assert any(i is not None for i in informants)
    token = demo_token("rita", ["investigator"], "analytics", clearance="restricted")
    informants = [c["informant"] for c in cases(demo_sidecar.query(INFORMANT, token).json)]
    assert informants and all(i is None for i in informants)
