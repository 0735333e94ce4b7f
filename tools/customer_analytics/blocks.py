"""The rows of the four files, one block of customers at a time: the string pools rows are assembled from, the
plan every block shares, and the malformed rows mixed in.

Every (file, block) pair draws from its own `random.Random` seeded with `"<seed>/<stream>/<block>"`, so a block
never depends on another one; `datagen` writes the blocks of each file in order.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import random
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from math import sqrt
from statistics import NormalDist
from typing import Any

AS_OF = datetime(2025, 7, 1, 12, 0, 0)
AS_OF_TEXT = AS_OF.strftime("%Y-%m-%d %H:%M:%S")
BLOCK_SIZE = 1000
# Times are whole seconds since _BASE, formatted through precomputed day and time-of-day strings.
_BASE = datetime(2019, 1, 1)
_DAY = 86400
_NOW = int((AS_OF - _BASE).total_seconds())
_SIGNUP_HISTORY = 5 * 365 * _DAY
_ACTIVITY_HISTORY = 3 * 365 * _DAY
_WEIGHT_SCALE = 4096
_WEIGHT_CAP = 1_000_000.0
# Lomax shapes: below 2 the variance is infinite, so a handful of customers carry a large share of events.
EVENT_SHAPE = 1.5
TRANSACTION_SHAPE = 2.2
_OUTLIER_SHARE = 1e-5


# -- pools: every string a row is assembled from, built once per process ------------------------------


def _safe(text: str) -> str:
    """`text`, checked to need no JSON escaping, so rows can be assembled with f-strings."""
    if any(ch in text for ch in '"\\') or any(ord(ch) < 0x20 for ch in text):
        raise ValueError(f"unsafe string in a datagen pool: {text!r}")
    return text


def _words(text: str) -> tuple[str, ...]:
    return tuple(_safe(word) for word in text.split())


_CITIES = {
    "New York": 83,
    "Los Angeles": 39,
    "Chicago": 27,
    "Houston": 23,
    "Phoenix": 16,
    "Philadelphia": 16,
    "San Antonio": 15,
    "San Diego": 14,
    "Dallas": 13,
    "Austin": 10,
    "San Jose": 10,
    "Jacksonville": 9,
    "Fort Worth": 9,
    "Columbus": 9,
    "Charlotte": 9,
    "Indianapolis": 9,
    "San Francisco": 8,
    "Seattle": 8,
    "Denver": 7,
    "Washington": 7,
    "Nashville": 7,
    "Oklahoma City": 7,
    "Boston": 7,
    "El Paso": 7,
    "Portland": 6,
    "Las Vegas": 6,
    "Detroit": 6,
    "Memphis": 6,
    "Baltimore": 6,
    "Atlanta": 5,
    "Miami": 4,
}
_GENDERS = {"female": 49, "male": 48, "non_binary": 3}
_EVENT_TYPES = {"page_view": 50, "login": 20, "add_to_cart": 18, "purchase": 12}
_CATEGORIES = {"electronics": 25, "home": 20, "books": 15, "sports": 15, "beauty": 12, "toys": 8, "grocery": 5}
_FIRST_NAMES = _words(
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara Richard Susan "
    "Joseph Jessica Thomas Sarah Carlos Karen Daniel Lisa Matthew Nancy Anthony Sandra Mark Ashley José "
    "María Wei Mei Aisha Omar Zoë Chloé Nguyễn Priya Arjun Kenji Ingrid Søren"
)
_LAST_NAMES = _words(
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez "
    "Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark "
    "Ramirez Lewis Robinson O'Brien O'Connor Müller Núñez Kowalski Chen Wang Kim Patel Nakamura Schäfer"
)
_DOMAINS = {"example.com": 60, "mail.example.org": 25, "inbox.example.net": 15}
_PRODUCTS = 5000
_POOL_BITS = 16


def _table(weights: dict[Any, float], bits: int = _POOL_BITS) -> list[Any]:
    """A lookup table of 2**bits items in proportion to `weights`: `table[getrandbits(bits)]` samples."""
    size = 1 << bits
    total = sum(weights.values())
    table: list[Any] = []
    cumulative = 0.0
    for item, weight in weights.items():
        cumulative += weight
        table.extend([item] * (round(size * cumulative / total) - len(table)))
    return table


def _lognormal_texts(mu: float, sigma: float, bits: int = _POOL_BITS) -> list[str]:
    """Quantiles of a log-normal distribution as JSON numbers with two decimals, one per table slot."""
    size = 1 << bits
    normal = NormalDist(mu, sigma)
    return [f"{math.exp(normal.inv_cdf((i + 0.5) / size)):.2f}" for i in range(size)]


def _slug(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "".join(ch for ch in ascii_name.lower() if ch.isalnum())


@dataclass(frozen=True)
class _Pools:
    days: list[str]
    times: list[str]
    cities: list[str]
    genders: list[str]
    ages: list[int]
    event_types: list[str]
    products: list[str]
    event_values: list[str]
    amounts: list[str]
    lifetime_values: list[str]
    names: list[tuple[str, str]]
    domains: list[str]


@cache
def _pools() -> _Pools:
    """Every precomputed string; the same for every seed, so only the draws differ between seeds."""
    days = [_safe((_BASE + timedelta(days=d)).strftime("%Y-%m-%d ")) for d in range(_NOW // _DAY + 2)]
    times = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(_DAY)]
    # Ages 18-80, most around the mid-thirties.
    ages = _table({age: math.exp(-(((age - 36) / 15) ** 2) / 2) + 0.08 for age in range(18, 81)})
    categories = _table({_safe(category): weight for category, weight in _CATEGORIES.items()}, 10)
    catalogue = random.Random("products")
    # Product popularity follows Zipf's law; each product keeps one category.
    products = {
        f'"product_id": "prod_{n:05d}", "category": "{catalogue.choice(categories)}"': 1 / n**1.1
        for n in range(1, _PRODUCTS + 1)
    }
    names = [
        (_safe(f"{first} {last}"), f"{_slug(first)}.{_slug(last)}") for first in _FIRST_NAMES for last in _LAST_NAMES
    ]
    return _Pools(
        days=days,
        times=times,
        cities=_table({_safe(city): weight for city, weight in _CITIES.items()}),
        genders=_table(_GENDERS),
        ages=ages,
        event_types=_table(_EVENT_TYPES),
        products=_table(products),
        event_values=_lognormal_texts(3.5, 1.0),
        amounts=_lognormal_texts(3.7, 1.2),
        lifetime_values=_lognormal_texts(4.4, 1.5),
        names=names,
        domains=_table(_DOMAINS, 8),
    )


# -- the plan: what every block needs to know about the whole dataset ---------------------------------


@dataclass(frozen=True)
class Plan:
    customers: int
    seed: int
    width: int
    malformed_share: float
    resent_share: float
    variant_share: float
    demographics_per_mille: int
    events: int
    transactions: int
    # Cumulative integer activity weights at each block start, so any block knows its share of rows.
    event_prefix: tuple[int, ...]
    transaction_prefix: tuple[int, ...]

    @property
    def blocks(self) -> int:
        return -(-self.customers // BLOCK_SIZE)

    def customer_range(self, block: int) -> range:
        """0-based customer indexes of a block."""
        return range(block * BLOCK_SIZE, min((block + 1) * BLOCK_SIZE, self.customers))

    def rng(self, stream: str, block: int) -> random.Random:
        """The generator of one stream in one block; string seeds are hashed with SHA-512, stably."""
        return random.Random(f"{self.seed}/{stream}/{block}")


def _weights(plan_seed: int, stream: str, block: int, size: int, shape: float) -> list[int]:
    """Lomax-distributed activity weights of a block's customers, as integers so sums are exact."""
    r = random.Random(f"{plan_seed}/{stream}/{block}").random
    exponent = -1.0 / shape
    return [int(min((1.0 - r()) ** exponent - 1.0, _WEIGHT_CAP) * _WEIGHT_SCALE) for _ in range(size)]


def prefix(seed: int, customers: int, stream: str, shape: float) -> tuple[int, ...]:
    sums = [0]
    for block in range(-(-customers // BLOCK_SIZE)):
        size = min(BLOCK_SIZE, customers - block * BLOCK_SIZE)
        sums.append(sums[-1] + sum(_weights(seed, stream, block, size, shape)))
    return tuple(sums)


def _counts(plan: Plan, stream: str, block: int) -> tuple[list[int], int]:
    """Rows per customer of a block and the global index of its first row (systematic rounding)."""
    total, prefix, shape = (
        (plan.events, plan.event_prefix, EVENT_SHAPE)
        if stream == "customer_events"
        else (plan.transactions, plan.transaction_prefix, TRANSACTION_SHAPE)
    )
    grand = prefix[-1] or 1
    weights = _weights(plan.seed, f"{stream}-weights", block, len(plan.customer_range(block)), shape)
    cumulative = prefix[block]
    start = previous = total * cumulative // grand
    counts = []
    for weight in weights:
        cumulative += weight
        current = total * cumulative // grand
        counts.append(current - previous)
        previous = current
    return counts, start


def _ids(plan: Plan, block: int) -> list[str]:
    pattern = f"cust_%0{plan.width}d"
    return [pattern % (n + 1) for n in plan.customer_range(block)]


def _signups(plan: Plan, block: int) -> list[int]:
    """Signup moments (seconds since _BASE): over five years, more of them recent, at least an hour ago."""
    r = plan.rng("signup", block).random
    return [_NOW - 3600 - int((_SIGNUP_HISTORY - 3600) * r() ** 1.3) for _ in plan.customer_range(block)]


def _demography(plan: Plan, block: int) -> tuple[list[int], list[str]]:
    """Ages and locations, shared by `customers` and `customer_demographics`."""
    bits = plan.rng("demography", block).getrandbits
    pools = _pools()
    size = len(plan.customer_range(block))
    return [pools.ages[bits(_POOL_BITS)] for _ in range(size)], [pools.cities[bits(_POOL_BITS)] for _ in range(size)]


_SPELLINGS: tuple[Callable[[str], str], ...] = (
    str.upper,
    str.capitalize,
    lambda cid: f" {cid}",
    lambda cid: f"{cid} ",
    lambda cid: f"  {cid.upper()}  ",
)


def _speller(plan: Plan, r: Callable[[], float]) -> Callable[[str], str]:
    """Spells a canonical ID as sent: canonical most of the time, else upper, capitalised or padded."""
    share = plan.variant_share
    spellings = _SPELLINGS
    scale = len(spellings) / share if share else 0.0

    def spell(cid: str) -> str:
        v = r()
        return cid if v >= share else spellings[int(v * scale)](cid)

    return spell


def _moment(t: int) -> str:
    pools = _pools()
    return pools.days[t // _DAY] + pools.times[t % _DAY]


# -- malformed rows -----------------------------------------------------------------------------------


def _drop(line: str, name: str) -> str:
    """The line without field `name` (a string or number value)."""
    key = f'"{name}": '
    start = line.index(key)
    end = start + len(key)
    end = (
        line.index('"', end + 1) + 1
        if line[end] == '"'
        else min(i for i in (line.find(",", end), line.find("}", end)) if i >= 0)
    )
    if line[end : end + 2] == ", ":
        return line[:start] + line[end + 2 :]
    return line[: start - 2] + line[end:]


def _replace(line: str, name: str, value: str) -> str:
    """The line with field `name` set to the raw JSON `value` (inserted first when absent)."""
    key = f'"{name}": '
    if key not in line:
        return "{" + key + value + ", " + line[1:]
    return "{" + key + value + ", " + _drop(line, name)[1:]


def _month_13(line: str, name: str) -> str:
    key = f'"{name}": "'
    at = line.index(key) + len(key) + 5
    return line[:at] + "13" + line[at + 2 :]


_MALFORMED: dict[str, dict[str, Callable[[str, random.Random], str]]] = {
    "customers": {
        "wrong_type": lambda line, _: _replace(line, "lifetime_value", '"lots"'),
        "missing_field": lambda line, rng: _drop(line, rng.choice(("timestamp", "customer_id", "age"))),
        "out_of_range": lambda line, rng: _replace(line, "age", rng.choice(("300", "-4"))),
    },
    "customer_events": {
        "wrong_type": lambda line, _: _replace(line, "event_value", '"free"'),
        "missing_field": lambda line, rng: _drop(line, rng.choice(("timestamp", "customer_id", "event_type"))),
        "out_of_range": lambda line, _: _month_13(line, "timestamp"),
    },
    "customer_transactions": {
        "wrong_type": lambda line, _: _replace(line, "transaction_amount", '"ten"'),
        "missing_field": lambda line, rng: _drop(line, rng.choice(("transaction_date", "transaction_amount"))),
        "out_of_range": lambda line, _: _month_13(line, "transaction_date"),
    },
    "customer_demographics": {
        "wrong_type": lambda line, _: _replace(line, "age", '"old"'),
        "missing_field": lambda line, rng: _drop(line, rng.choice(("age", "location", "customer_id"))),
        "out_of_range": lambda line, rng: _replace(line, "age", rng.choice(("300", "-4", "40.5"))),
    },
}


def _invalid_json(line: str, rng: random.Random) -> str:
    """A line cut short (never a whole object) or plain text."""
    return line[: rng.randint(1, len(line) - 1)] if rng.random() < 0.8 else "this is not json"


def _corrupt(datasource: str, lines: list[str], plan: Plan, block: int) -> tuple[Counter, list[int]]:
    """Make a `malformed_share` of the lines malformed, at random positions; their kinds and indexes."""
    share = plan.malformed_share
    kinds: Counter = Counter()
    positions: list[int] = []
    if share <= 0 or not lines:
        return kinds, positions
    rng = plan.rng(f"{datasource}-malformed", block)
    breakers = {"invalid_json": _invalid_json, **_MALFORMED[datasource]}
    names = list(breakers)
    log_keep = math.log1p(-share) if share < 1 else None
    index = -1
    while True:
        # Geometric gaps between malformed rows: one draw per malformed row, not one per row.
        index += 1 + (int(math.log(1.0 - rng.random()) / log_keep) if log_keep else 0)
        if index >= len(lines):
            return kinds, positions
        kind = rng.choice(names)
        lines[index] = breakers[kind](lines[index][:-1], rng) + "\n"
        kinds[kind] += 1
        positions.append(index)


@dataclass
class _Chunk:
    """One block of one file: its text and what the report needs from it."""

    text: str
    rows: int
    malformed: Counter
    customers_with_rows: int = 0
    heaviest: list[tuple[int, str]] = field(default_factory=list)


def _with_valid_rows(counts: list[int], bad_rows: list[int]) -> int:
    """Customers of a block left with a row once the malformed rows (indexes in the block) are taken out."""
    ends = list(itertools.accumulate(counts))
    remaining = list(counts)
    for row in bad_rows:
        remaining[bisect.bisect_right(ends, row)] -= 1
    return sum(1 for n in remaining if n > 0)


# -- the four files -----------------------------------------------------------------------------------


def _customers_block(plan: Plan, block: int) -> _Chunk:
    """Customer profiles, then the block's re-sent profiles: a newer `timestamp` and lifetime value."""
    pools = _pools()
    ids, signups = _ids(plan, block), _signups(plan, block)
    ages, cities = _demography(plan, block)
    rng = plan.rng("customers", block)
    r, bits = rng.random, rng.getrandbits
    spell = _speller(plan, r)
    lines: list[str] = []
    resent: list[tuple[int, str]] = []
    numbers = plan.customer_range(block)
    for i, cid in enumerate(ids):
        name, slug = pools.names[int(r() * len(pools.names))]
        email = f"{slug}{numbers[i] + 1}@{pools.domains[bits(8)]}"
        head = (
            f'"name": "{name}", "email": "{email}", "age": {ages[i]}, "gender": "{pools.genders[bits(16)]}", '
            f'"location": "{cities[i]}", "signup_date": "{_moment(signups[i])}", "lifetime_value": '
        )
        # First sent soon after signup; a re-send comes later, always strictly before AS_OF.
        sent = signups[i] + int((_NOW - 2 - signups[i]) * r() ** 4)
        ltv = pools.lifetime_values[bits(16)]
        lines.append(f'{{"customer_id": "{spell(cid)}", {head}{ltv}, "timestamp": "{_moment(sent)}"}}\n')
        if r() < plan.resent_share:
            later = sent + 1 + int((_NOW - 1 - sent) * r() ** 0.5)
            grown = f"{float(ltv) + float(pools.event_values[bits(16)]):.2f}"
            resent.append((i, f'{{"customer_id": "{spell(cid)}", {head}{grown}, "timestamp": "{_moment(later)}"}}\n'))
    owners = list(range(len(ids))) + [i for i, _ in resent]
    lines.extend(line for _, line in resent)
    malformed, positions = _corrupt("customers", lines, plan, block)
    rows, bad = Counter(owners), Counter(owners[p] for p in positions)
    valid = sum(1 for i in range(len(ids)) if rows[i] > bad[i])
    return _Chunk("".join(lines), len(lines), malformed, valid)


def _events_block(plan: Plan, block: int) -> _Chunk:
    """Events after each customer's signup, denser near AS_OF; only purchases carry a value."""
    pools = _pools()
    ids, signups = _ids(plan, block), _signups(plan, block)
    counts, first = _counts(plan, "customer_events", block)
    rng = plan.rng("customer_events", block)
    r, bits = rng.random, rng.getrandbits
    spell = _speller(plan, r)
    days, times, types, products, values = (
        pools.days,
        pools.times,
        pools.event_types,
        pools.products,
        pools.event_values,
    )
    event_id = f"evt_%0{max(9, len(str(plan.events)))}d"  # %-formatting is twice as fast as a nested f-string
    lines: list[str] = []
    add = lines.append
    number = first
    for cid, signup, count in zip(ids, signups, counts, strict=True):
        span = min(_NOW - signup, _ACTIVITY_HISTORY)
        for _ in range(count):
            number += 1
            kind = types[bits(16)]
            if kind == "purchase":
                kind = f'purchase", "event_value": {values[bits(16)]}, {products[bits(16)]}, "'
            elif kind == "add_to_cart":
                kind = f'add_to_cart", {products[bits(16)]}, "'
            else:
                kind += '", "'
            day, second = divmod(_NOW - int(span * (1.0 - sqrt(1.0 - r()))), _DAY)
            add(
                f'{{"event_id": "{event_id % number}", "customer_id": "{spell(cid)}", "event_type": "{kind}'
                f'timestamp": "{days[day]}{times[second]}"}}\n'
            )
    malformed, positions = _corrupt("customer_events", lines, plan, block)
    heaviest = heapq.nlargest(5, zip(counts, ids, strict=True))
    return _Chunk("".join(lines), len(lines), malformed, _with_valid_rows(counts, positions), heaviest)


def _transactions_block(plan: Plan, block: int) -> _Chunk:
    """Transactions after signup with long-tailed amounts and, rarely, a huge outlier."""
    pools = _pools()
    ids, signups = _ids(plan, block), _signups(plan, block)
    counts, _ = _counts(plan, "customer_transactions", block)
    rng = plan.rng("customer_transactions", block)
    r, bits = rng.random, rng.getrandbits
    spell = _speller(plan, r)
    days, times, amounts = pools.days, pools.times, pools.amounts
    lines: list[str] = []
    add = lines.append
    for cid, signup, count in zip(ids, signups, counts, strict=True):
        span = min(_NOW - signup, _ACTIVITY_HISTORY)
        for _ in range(count):
            day, second = divmod(_NOW - int(span * (1.0 - sqrt(1.0 - r()))), _DAY)
            amount = amounts[bits(16)] if r() >= _OUTLIER_SHARE else str(rng.randint(10_000_000, 500_000_000))
            add(
                f'{{"customer_id": "{spell(cid)}", "transaction_date": "{days[day]}{times[second]}", '
                f'"transaction_amount": {amount}}}\n'
            )
    malformed, positions = _corrupt("customer_transactions", lines, plan, block)
    return _Chunk("".join(lines), len(lines), malformed, _with_valid_rows(counts, positions))


def _demographics_block(plan: Plan, block: int) -> _Chunk:
    """Age and location per customer (re-sent identically when there is more than one row per customer)."""
    ids = _ids(plan, block)
    ages, cities = _demography(plan, block)
    spell = _speller(plan, plan.rng("customer_demographics", block).random)
    per_mille = plan.demographics_per_mille
    lines: list[str] = []
    counts: list[int] = []
    for i, n in enumerate(plan.customer_range(block)):
        count = (n + 1) * per_mille // 1000 - n * per_mille // 1000
        counts.append(count)
        line = f'", "age": {ages[i]}, "location": "{cities[i]}"}}\n'
        lines.extend(f'{{"customer_id": "{spell(ids[i])}{line}' for _ in range(count))
    malformed, positions = _corrupt("customer_demographics", lines, plan, block)
    return _Chunk("".join(lines), len(lines), malformed, _with_valid_rows(counts, positions))


BLOCKS: dict[str, Callable[[Plan, int], _Chunk]] = {
    "customers": _customers_block,
    "customer_events": _events_block,
    "customer_transactions": _transactions_block,
    "customer_demographics": _demographics_block,
}
