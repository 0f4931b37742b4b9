# Token exchange policy (POST /token/exchange): which purposes a subject may get a token for.
#
# input.subject: the identity provider's token, mapped to our claims (sub, tenant, roles,
# region, clearance, and `purposes` when that token already names some).
# input.request.purpose: the purpose asked for.
package intelgraph.exchange

import rego.v1

roles := {r | some r in input.subject.roles}

# Which roles may act for which purpose.
purpose_roles := {
	"investigation": {"investigator"},
	"analytics": {"analyst", "admin"},
	"export": {"analyst", "admin"},
	"administration": {"admin", "privacy-officer"},
	"audit": {"auditor", "admin", "privacy-officer"},
	"support": {"support"},
}

allowed_purposes := {purpose |
	some purpose, holders in purpose_roles
	some role in roles
	role in holders
	narrows(purpose)
}

# A subject token that already names purposes can only be narrowed to one of them.
narrows(_) if not input.subject.purposes

narrows(purpose) if purpose in input.subject.purposes
