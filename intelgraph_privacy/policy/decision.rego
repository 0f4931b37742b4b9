# The decision contract of intelgraph_privacy. Shipped with the library and loaded into every
# bundle; do not edit it to change what fields become — write rules in package intelgraph.redact.
#
# A bundle's rules live in package intelgraph.redact as sets named deny, redact (null), hash, mask
# and generalise. Each rule looks at one field, input.field, and at the principal, input.user, and
# adds input.field.name to a set when it applies (the PRODUCT.md rule is exactly such a rule).
# This package evaluates those sets for every field the request touches (input.fields) in a single
# query and keeps, per field, the strictest action that applies; no rule means keep.
package intelgraph.decision

import rego.v1

rank := {"keep": 0, "generalise": 1, "mask": 2, "hash": 3, "null": 4, "deny": 5}

applies(f, "deny") if data.intelgraph.redact.deny[f.name] with input.field as f

applies(f, "null") if data.intelgraph.redact.redact[f.name] with input.field as f

applies(f, "hash") if data.intelgraph.redact.hash[f.name] with input.field as f

applies(f, "mask") if data.intelgraph.redact.mask[f.name] with input.field as f

applies(f, "generalise") if data.intelgraph.redact.generalise[f.name] with input.field as f

strictest(candidates) := "keep" if count(candidates) == 0

strictest(candidates) := top if {
	some top in candidates
	every other in candidates {
		rank[other] <= rank[top]
	}
}

actions[f.name] := action if {
	some f in input.fields
	action := strictest({a | some a, _ in rank; a != "keep"; applies(f, a)})
}
