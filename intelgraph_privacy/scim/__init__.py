"""Access reviews and SCIM provisioning (the reviews table so far: see `reviews`)."""

from intelgraph_privacy.scim.reviews import count_open_reviews

__all__ = ["count_open_reviews"]
