"""Analytics: k-anonymity for the rows of analytics operations (packs come later)."""

from intelgraph_privacy.analytics.results import (
    AnalyticsError,
    AnalyticsField,
    AnonPreset,
    AnonReport,
    anonymize_response,
    check_analytics,
    load_anon_preset,
)

__all__ = [
    "AnalyticsError",
    "AnalyticsField",
    "AnonPreset",
    "AnonReport",
    "anonymize_response",
    "check_analytics",
    "load_anon_preset",
]
