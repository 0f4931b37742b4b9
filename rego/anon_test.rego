# Tests of the k-anonymity exemption policy: `intelgraph-privacy policy test rego/` runs them.
package intelgraph.anon_test

import rego.v1

exempt(purpose) := e if {
	e := data.intelgraph.anon.exempt with input as {
		"user": {"sub": "u1", "tenant": "t1", "roles": ["analyst"], "purpose": purpose, "region": null, "clearance": null},
		"operations": ["Query.cohort"],
	}
}

test_nothing_is_exempt_by_default if {
	exempt("analytics") == set()
	exempt("audit") == set()
}

test_a_listed_operation_is_exempt_for_its_purposes_only if {
	e := data.intelgraph.anon.exempt with data.intelgraph.anon.exempt_operations as {"Query.cohort": {"audit"}}
		with input as {
			"user": {"sub": "u1", "tenant": "t1", "roles": [], "purpose": "audit", "region": null, "clearance": null},
			"operations": ["Query.cohort"],
		}
	e == {"Query.cohort"}
	f := data.intelgraph.anon.exempt with data.intelgraph.anon.exempt_operations as {"Query.cohort": {"audit"}}
		with input as {
			"user": {"sub": "u1", "tenant": "t1", "roles": [], "purpose": "analytics", "region": null, "clearance": null},
			"operations": ["Query.cohort"],
		}
	f == set()
}
