"""Hypothesis profiles, registered once and chosen by name (--hypothesis-profile=NAME).

deadline=None everywhere: a campaign measures numbers, not latency, and a noisy 2-core
machine must not turn a slow example into a failure. derandomize=False everywhere: with CI set,
Hypothesis would otherwise derive these profiles from its own CI defaults and ignore
--hypothesis-seed; a run is reproduced by passing the seed its report header names.
"""

from __future__ import annotations

import os

from hypothesis import settings
from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase

# The campaign's op and invalid-call tests judge several examples per Hypothesis test case:
# Hypothesis's own cost per case (seeding and restoring the PRNGs, its choice tree, context
# managers: about 2 ms) is then paid once per batch. A profile's count stays the number of
# examples per group, exactly (--max-examples is an upper bound): a batch is the largest
# divisor of it up to EXAMPLES_PER_CASE.
EXAMPLES_PER_CASE = 5


def per_case(examples: int) -> int:
    """Examples per Hypothesis test case for ``examples`` examples per group."""
    return max(size for size in range(1, EXAMPLES_PER_CASE + 1) if examples % size == 0)


PROFILES = {
    "quick": 20,
    # ci: at least 100 distinct recorded examples per op x dtype x direction; different
    # choice sequences can draw the same example (the recorder keeps it once).
    "ci": 150,
    "thorough": 1000,
}


def _database() -> ExampleDatabase | None:
    """CONFORMANCE_DATABASE: a directory for Hypothesis's example database, or 'none'.

    A run first replays what the database holds (earlier failures), then the seed's own
    examples; with 'none' the same seed and profile always give the same rows."""
    where = os.environ.get("CONFORMANCE_DATABASE", ".hypothesis/examples")
    return None if where == "none" else DirectoryBasedExampleDatabase(where)


for _name, _max_examples in PROFILES.items():
    settings.register_profile(
        _name,
        max_examples=_max_examples,
        deadline=None,
        derandomize=False,
        print_blob=True,
        database=_database(),
    )

# "capped": the chosen profile with at most CONFORMANCE_MAX_EXAMPLES examples per group (run
# --max-examples), for implementations whose every new config costs seconds (torch.compile)
settings.register_profile(
    "capped",
    parent=settings.get_profile(os.environ.get("CONFORMANCE_PROFILE", "ci")),
    max_examples=int(os.environ.get("CONFORMANCE_MAX_EXAMPLES") or PROFILES["quick"]),
)
settings.load_profile(os.environ.get("CONFORMANCE_PROFILE", "ci"))
