"""How `make test` spreads the main pytest run over the machine's two cores (pytest-xdist, `-n 2`).

The cluster tests share one session cluster and run in a fixed order, so they
are one unit of work, handed out first: one worker runs them from start to
end (most of the run) while the other works through the unit and integration
tests, one file at a time (so each file's module fixtures are set up once). `make test`'s other lane (release-lint,
test-min, sanity, lint) runs beside both; see the Makefile.

A plain `pytest` (no -n) is not affected: this ordering applies in workers only.
"""

CLUSTER = "tests/cluster/"


def unit_of(nodeid):
    """The unit of work a test belongs to: every cluster test is one, else its file."""
    if nodeid.startswith(CLUSTER):
        return CLUSTER
    return nodeid.split("::", 1)[0]


def lane_rank(nodeid):
    """Cluster tests first (the longest unit, started at once on one worker, which takes no other unit
    while more than two of its tests are pending), then the unit tests, then the integration tests."""
    if nodeid.startswith(CLUSTER):
        return 0
    if nodeid.startswith("tests/unit/"):
        return 1
    return 2


def in_lane_order(items):
    """The collected items in the order the scheduler hands them out (stable inside each rank)."""
    return sorted(items, key=lambda item: lane_rank(item.nodeid))


def scheduler(config, log):
    """A load-scope scheduler whose scopes are unit_of(): the cluster tests, then one file each."""
    from xdist.scheduler import LoadScopeScheduling

    class Lanes(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            return unit_of(nodeid)

    # hand the units out in collection order (in_lane_order), not largest first
    config.option.loadscopereorder = False
    return Lanes(config, log)
