# Attribute-based access control for the admin API (/admin/graphql).
#
# `granted` is the set of attributes the principal (input.user: roles, purpose, tenant, region,
# clearance) holds. An admin operation annotated @auth(abac: "admin.write") runs only when
# "admin.write" is granted. The write attributes also need the purpose `administration`: an
# admin holding an investigation token cannot change privacy settings with it.
package intelgraph.abac

import rego.v1

roles := {r | some r in input.user.roles}

# Which roles hold which attribute.
role_grants := {
	"admin.write": {"admin"},
	"privacy.write": {"admin", "privacy-officer"},
	"analytics.read": {"analyst", "admin"},
}

# Attributes that also need a purpose.
required_purpose := {
	"admin.write": "administration",
	"privacy.write": "administration",
}

granted := {attribute |
	some attribute, holders in role_grants
	some role in roles
	role in holders
	purpose_ok(attribute)
}

purpose_ok(attribute) if not required_purpose[attribute]

purpose_ok(attribute) if input.user.purpose == required_purpose[attribute]
