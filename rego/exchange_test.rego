# Tests of the token exchange policy: `intelgraph-privacy policy test rego/` runs them.
package intelgraph.exchange_test

import rego.v1

allowed(subject) := a if {
	a := data.intelgraph.exchange.allowed_purposes with input as {
		"subject": object.union({"sub": "u1", "tenant": "t1", "region": null, "clearance": null}, subject),
		"request": {"purpose": "investigation"},
	}
}

test_roles_decide_the_purposes if {
	allowed({"roles": ["investigator"]}) == {"investigation"}
	allowed({"roles": ["analyst"]}) == {"analytics", "export"}
	allowed({"roles": ["admin"]}) == {"analytics", "export", "administration", "audit"}
	allowed({"roles": ["privacy-officer"]}) == {"administration", "audit"}
}

test_no_role_no_purpose if {
	allowed({"roles": []}) == set()
	allowed({"roles": ["high-clearance"]}) == set()
}

test_a_purpose_limited_subject_token_only_narrows if {
	allowed({"roles": ["admin"], "purposes": ["analytics"]}) == {"analytics"}
	allowed({"roles": ["investigator"], "purposes": ["analytics"]}) == set()
}
