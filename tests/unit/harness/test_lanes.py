"""How make test's main pytest run is spread over two workers (tests/support/lanes.py)."""

from types import SimpleNamespace

from support import lanes


def test_every_cluster_test_is_one_unit_and_other_tests_go_by_file():
    assert lanes.unit_of("tests/cluster/test_site.py::test_site_converges") == "tests/cluster/"
    assert lanes.unit_of("tests/cluster/test_site_mixed.py::test_x") == "tests/cluster/"
    assert lanes.unit_of("tests/integration/etcd/test_renew.py::test_r[a::b]") == "tests/integration/etcd/test_renew.py"
    assert lanes.unit_of("tests/unit/core/test_lease.py::TestX::test_y") == "tests/unit/core/test_lease.py"


def test_cluster_tests_are_handed_out_first_each_kind_in_its_own_order():
    ids = ["tests/unit/a.py::t1", "tests/integration/b.py::t2", "tests/cluster/test_site.py::t3",
           "tests/unit/a.py::t4", "tests/cluster/test_site_mixed.py::t5", "tests/integration/b.py::t6"]
    ordered = [i.nodeid for i in lanes.in_lane_order([SimpleNamespace(nodeid=n) for n in ids])]
    assert ordered == ["tests/cluster/test_site.py::t3", "tests/cluster/test_site_mixed.py::t5",
                       "tests/unit/a.py::t1", "tests/unit/a.py::t4", "tests/integration/b.py::t2",
                       "tests/integration/b.py::t6"]


def test_the_waiting_cluster_files_run_right_after_the_first_site_runs():
    ids = ["tests/cluster/test_harness.py::h", "tests/cluster/test_site.py::s1", "tests/cluster/test_site.py::s2",
           "tests/cluster/test_site_backends.py::b", "tests/cluster/test_site_etcd_faults.py::f",
           "tests/cluster/test_site_renew.py::r", "tests/cluster/test_site_secrets.py::x", "tests/unit/u.py::u"]
    ordered = [i.nodeid for i in lanes.in_lane_order([SimpleNamespace(nodeid=n) for n in reversed(ids)])]
    assert ordered[:6] == ["tests/cluster/test_harness.py::h", "tests/cluster/test_site.py::s2",
                           "tests/cluster/test_site.py::s1", "tests/cluster/test_site_etcd_faults.py::f",
                           "tests/cluster/test_site_renew.py::r", "tests/cluster/test_site_secrets.py::x"]
    assert ordered[6:] == ["tests/cluster/test_site_backends.py::b", "tests/unit/u.py::u"]
