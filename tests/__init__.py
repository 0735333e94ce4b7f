"""The test suite; `ROOT` is the repository the tests run against."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The project's six endpoints, as the tests expect them (a test fails when one is added or removed).
ENDPOINTS = (
    "cltv_by_location",
    "cltv_summary",
    "customer_cltv",
    "customer_engagement_analysis",
    "customer_segment_lookup",
    "customer_segments_summary",
)
