# Tests of the admin API's ABAC policy: `intelgraph-privacy policy test rego/` runs them.
package intelgraph.abac_test

import rego.v1

granted(roles, purpose) := g if {
	g := data.intelgraph.abac.granted with input as {"user": {
		"sub": "u1", "tenant": "t1", "roles": roles, "purpose": purpose,
		"region": null, "clearance": null,
	}}
}

test_admin_with_administration_purpose_holds_every_attribute if {
	granted(["admin"], "administration") == {"admin.write", "privacy.write", "analytics.read"}
}

test_privacy_officer_holds_privacy_write_only if {
	granted(["privacy-officer"], "administration") == {"privacy.write"}
}

test_analyst_holds_analytics_read_for_any_purpose if {
	granted(["analyst"], "analytics") == {"analytics.read"}
	granted(["analyst"], "investigation") == {"analytics.read"}
}

test_write_attributes_need_the_administration_purpose if {
	granted(["admin"], "investigation") == {"analytics.read"}
	granted(["privacy-officer"], "analytics") == set()
}

test_other_roles_hold_nothing if {
	granted(["investigator", "high-clearance"], "administration") == set()
	granted([], "administration") == set()
}
