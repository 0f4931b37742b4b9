# Tests of the shipped redaction tiers: `intelgraph-privacy policy test rego/` runs them.
package intelgraph.redact_test

import rego.v1

field(name, sensitivity, extra) := object.union(
	{
		"name": name, "type": split(name, ".")[0], "field": split(name, ".")[1],
		"operation": false, "sensitivity": sensitivity, "categories": [], "purposes": [],
		"quasi_identifier": false, "analytics": false, "subject_key": false,
		"residency": null, "retention": null, "reduce": "mask",
	},
	extra,
)

action(roles, purpose, f) := cleared_action(roles, purpose, null, f)

cleared_action(roles, purpose, clearance, f) := a if {
	a := data.intelgraph.decision.actions[f.name] with input as {
		"user": {
			"sub": "u1", "tenant": "t1", "roles": roles, "purpose": purpose,
			"region": null, "clearance": clearance,
		},
		"fields": [f],
	}
}

ssn := field("Person.ssn", "high", {})

email := field("Person.email", "medium", {})

city := field("Person.city", "low", {})

test_high_is_null_without_high_clearance if {
	action(["investigator"], "investigation", ssn) == "null"
	action(["analyst"], "investigation", ssn) == "null"
}

test_high_is_kept_with_high_clearance if {
	action(["high-clearance", "investigator"], "investigation", ssn) == "keep"
}

test_medium_is_masked_for_analysts if {
	action(["analyst"], "investigation", email) == "mask"
}

test_medium_is_kept_for_investigators if {
	action(["investigator"], "investigation", email) == "keep"
	action(["investigator", "analyst"], "investigation", email) == "keep"
}

test_medium_is_null_for_other_roles if {
	action(["high-clearance"], "investigation", email) == "null"
	action([], "investigation", email) == "null"
}

test_medium_uses_the_catalog_reduction_for_analysts if {
	action(["analyst"], "investigation", field("Person.riskScore", "medium", {"reduce": "generalise"})) == "generalise"
	action(["analyst"], "investigation", field("Case.reference", "medium", {"reduce": "hash"})) == "hash"
	action(["analyst"], "investigation", field("Person.notes", "medium", {"reduce": "null"})) == "null"
}

test_low_is_kept_for_everyone if {
	action([], "investigation", city) == "keep"
	action(["analyst"], "analytics", city) == "keep"
}

test_restricted_needs_clearance_and_a_listed_purpose if {
	f := field("Case.informant", "restricted", {"purposes": ["investigation"]})
	action(["restricted-clearance"], "investigation", f) == "keep"
	action(["restricted-clearance"], "analytics", f) == "null"
	action(["high-clearance", "investigator"], "investigation", f) == "null"
}

test_restricted_without_listed_purposes_serves_nobody if {
	f := field("Case.informant", "restricted", {})
	action(["restricted-clearance"], "investigation", f) == "null"
}

test_purpose_binding_nulls_fields_for_other_purposes if {
	f := field("Person.city", "low", {"purposes": ["investigation"]})
	action(["investigator"], "investigation", f) == "keep"
	action(["investigator"], "analytics", f) == "null"
}

test_strictest_action_wins if {
	# medium would be masked for an analyst, but the purpose binding nulls it.
	f := field("Person.email", "medium", {"purposes": ["investigation"]})
	action(["analyst"], "marketing", f) == "null"
}

test_every_touched_field_gets_an_action if {
	actions := data.intelgraph.decision.actions with input as {
		"user": {"sub": "u1", "tenant": "t1", "roles": ["analyst"], "purpose": "investigation", "region": null},
		"fields": [ssn, email, city],
	}
	actions == {"Person.ssn": "null", "Person.email": "mask", "Person.city": "keep"}
}

test_purpose_binding_refuses_operations_for_other_purposes if {
	cohort := field("Query.cohort", "low", {"operation": true, "purposes": ["analytics"]})
	action(["analyst"], "analytics", cohort) == "keep"
	action(["analyst"], "investigation", cohort) == "deny"
	action(["admin"], "administration", cohort) == "deny"
}

test_operations_without_listed_purposes_serve_every_purpose if {
	people := field("Query.people", "low", {"operation": true})
	action(["analyst"], "export", people) == "keep"
}

test_clearance_claim_clears_high_fields if {
	cleared_action(["investigator"], "investigation", "high", ssn) == "keep"
	cleared_action(["investigator"], "investigation", "restricted", ssn) == "keep"
	cleared_action(["investigator"], "investigation", "medium", ssn) == "null"
}

test_restricted_clearance_claim_still_needs_a_listed_purpose if {
	f := field("Case.informant", "restricted", {"purposes": ["investigation"]})
	cleared_action([], "investigation", "restricted", f) == "keep"
	cleared_action([], "analytics", "restricted", f) == "null"
	cleared_action([], "investigation", "high", f) == "null"
}
