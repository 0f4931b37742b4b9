# Redaction tiers shipped with IntelGraph Privacy.
#
# Each rule looks at one field (input.field: its catalog entry) and the principal (input.user)
# and names the field in a set: redact (null), mask, hash, generalise or deny. The library's
# decision contract keeps the strictest action per field; a field named in no set is kept.
package intelgraph.redact

import rego.v1

roles := {r | some r in input.user.roles}

purpose_listed if input.user.purpose in input.field.purposes

# Purpose binding: a field that lists the purposes it serves serves no other. A field is nulled;
# an operation (a root field such as Query.cohort) is refused as a whole.
purpose_bound if {
	count(input.field.purposes) > 0
	not purpose_listed
}

redact contains input.field.name if {
	purpose_bound
	not input.field.operation
}

deny contains input.field.name if {
	purpose_bound
	input.field.operation
}

# Clearance comes from a role or from the token's clearance claim.
high_cleared if "high-clearance" in roles

high_cleared if input.user.clearance in {"high", "restricted"}

restricted_role if "restricted-clearance" in roles

restricted_role if input.user.clearance == "restricted"

# high: only readers cleared for high.
redact contains input.field.name if {
	input.field.sensitivity == "high"
	not high_cleared
}

# restricted: role restricted-clearance and a purpose the field lists explicitly.
redact contains input.field.name if {
	input.field.sensitivity == "restricted"
	not restricted_cleared
}

restricted_cleared if {
	restricted_role
	purpose_listed
}

# medium: investigators keep the value, analysts get its reduced form
# (the catalog's `reduce`: mask by default), anyone else gets null.
medium_reduced if {
	input.field.sensitivity == "medium"
	not "investigator" in roles
	"analyst" in roles
}

redact contains input.field.name if {
	input.field.sensitivity == "medium"
	not "investigator" in roles
	not "analyst" in roles
}

mask contains input.field.name if {
	medium_reduced
	input.field.reduce == "mask"
}

hash contains input.field.name if {
	medium_reduced
	input.field.reduce == "hash"
}

generalise contains input.field.name if {
	medium_reduced
	input.field.reduce == "generalise"
}

redact contains input.field.name if {
	medium_reduced
	input.field.reduce == "null"
}
