"""Request parameters for our six endpoints on generated data: the benchmark's and the cost budgets' calls.

Deterministic for a number of customers and a seed: defaults (a random existing customer where one is required),
and varied ones drawn from the generated customers, windows, filters and limits.
"""

from __future__ import annotations

import random
import time

from . import datagen

# The endpoints `tbkit bench` times, in its tables' order: the per-customer point reads first.
ENDPOINTS = (
    "customer_segment_lookup",
    "customer_cltv",
    "customer_engagement_analysis",
    "customer_segments_summary",
    "cltv_summary",
    "cltv_by_location",
)
PER_CUSTOMER = ("customer_segment_lookup", "customer_cltv")
LOCATIONS = ["New York", "Chicago", "Austin", "Seattle", "Miami", "Boston", "Denver"]
EVENT_TYPES = ["purchase", "login", "page_view", "add_to_cart"]


class Parameters:
    """Deterministic request parameters for each endpoint: defaults, and varied ones."""

    def __init__(self, customers: int, seed: int):
        self.customers = customers
        self.rng = random.Random(seed)

    def customer(self, spell: bool = False) -> str:
        """A generated customer's ID, in another spelling when `spell`."""
        cid = datagen.customer_id(self.rng.randint(1, self.customers), self.customers)
        if spell:
            cid = self.rng.choice([cid, cid.upper(), f"  {cid} ", cid.capitalize()])
        return cid

    def moment(self, days_back: int) -> str:
        """A time up to `days_back` days before the data's `as_of`."""
        moment = datagen.AS_OF.timestamp() - self.rng.randint(0, days_back * 86400)
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(moment))

    def default(self, endpoint: str) -> dict[str, str]:
        """Default parameters; a random existing customer for the per-customer endpoints."""
        return {"customer_id": self.customer()} if endpoint in PER_CUSTOMER else {}

    def varied(self, endpoint: str) -> dict[str, str]:
        """Random filters, windows, limits, customers in other spellings and `as_of` values."""
        rng = self.rng
        if endpoint == "customer_segment_lookup":
            return {"customer_id": self.customer(spell=True), "as_of": self.moment(730)}
        if endpoint == "customer_cltv":
            return {"customer_id": self.customer(spell=True)}
        if endpoint == "customer_engagement_analysis":
            start = self.moment(1000)
            end = time.strftime(
                "%Y-%m-%d %H:%M:%S",
                time.gmtime(time.mktime(time.strptime(start, "%Y-%m-%d %H:%M:%S")) + rng.randint(1, 90) * 86400),
            )
            params = {
                "start_date": start,
                "end_date": end,
                "limit": str(rng.randint(1, 500)),
                "as_of": datagen.AS_OF_TEXT,
            }
            if rng.random() < 0.5:
                params["event_type"] = ",".join(rng.sample(EVENT_TYPES, rng.randint(1, 2)))
            return params
        if endpoint == "customer_segments_summary":
            low = rng.randint(18, 60)
            params = {"min_age": str(low), "max_age": str(rng.randint(low, 80)), "as_of": self.moment(365)}
            if rng.random() < 0.7:
                params["location"] = rng.choice(LOCATIONS)
            return params
        return {}
