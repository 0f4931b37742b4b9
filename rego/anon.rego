# Exemptions from k-anonymity for analytics operations (presets/anon.yaml).
#
# `exempt` is the set of analytics operations (root-field coordinates, input.operations) whose
# rows may leave without k-anonymity for this principal (input.user). Nothing is exempt unless
# listed in `exempt_operations` below, and then only for a purpose listed with it.
package intelgraph.anon

import rego.v1

# operation -> purposes for which it is exempt. Empty: every analytics result is k-anonymous.
exempt_operations := {}

exempt contains operation if {
	some operation in input.operations
	input.user.purpose in exempt_operations[operation]
}
