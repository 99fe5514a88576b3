"""How `make test` spreads the main pytest run over the machine's two cores (pytest-xdist, `-n 2`).

The cluster tests share one session cluster and run in a fixed order, so they
are one unit of work, handed out first: one worker runs them from start to
end (most of the run) while the other works through the unit and integration
tests, one file at a time (so each file's module fixtures are set up once).
`make test`'s other lane (release-lint, test-min, sanity, lint) runs beside
both; see the Makefile.

A plain `pytest` (no -n) is not affected: this ordering applies in workers only.
"""

CLUSTER = "tests/cluster/"
# The cluster files that run first, in this order; the others follow in name order. The test files that spend
# the most of their time waiting on purpose (an etcd outage, leases outliving a short TTL) come right after
# the first site.yml runs, while the other lane is busiest: it takes the CPU they leave. Each cluster file
# starts from whatever the one before left (the `converged` fixture, or a site.yml run of its own).
CLUSTER_FIRST = ("tests/cluster/test_harness.py", "tests/cluster/test_site.py",
                 "tests/cluster/test_site_etcd_faults.py", "tests/cluster/test_site_renew.py")


def unit_of(nodeid):
    """The unit of work a test belongs to: every cluster test is one, else its file."""
    if nodeid.startswith(CLUSTER):
        return CLUSTER
    return nodeid.split("::", 1)[0]


def lane_rank(nodeid):
    """Cluster tests first (the longest unit, started at once on one worker, which takes no other unit
    while more than two of its tests are pending; CLUSTER_FIRST before the other cluster files), then the
    unit tests, then the integration tests."""
    if nodeid.startswith(CLUSTER):
        path = nodeid.split("::", 1)[0]
        return (0, CLUSTER_FIRST.index(path) if path in CLUSTER_FIRST else len(CLUSTER_FIRST))
    if nodeid.startswith("tests/unit/"):
        return (1, 0)
    return (2, 0)


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
