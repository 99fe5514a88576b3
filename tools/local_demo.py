"""The main job until the test cluster lands: a real ansible-playbook run against a local etcd.

Starts Debian's etcd on 127.0.0.1 (free ports, temporary data, stopped by its
PID), runs playbooks/examples/seed_and_lease.yml (the network config, a lease
for three example hosts, the listing), runs it again to show it changes
nothing, and prints who holds which subnet.
"""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
# imported for its side effects: links the collection for ansible-playbook
import conftest  # noqa: E402,F401  # pylint: disable=unused-import

from support.etcd_server import EtcdServer  # noqa: E402


def playbook(endpoint, *extra):
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
           "-i", "localhost,", "-c", "local", "-e", "ansible_python_interpreter=%s" % sys.executable,
           "-e", '{"flannel_etcd_endpoints": ["%s"]}' % endpoint,
           os.path.join(REPO, "playbooks", "examples", "seed_and_lease.yml")] + list(extra)
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=False).returncode


def main():
    with EtcdServer(name="demo") as server:
        print("etcd %s (pid %d)" % (server.endpoint, server.proc.pid), flush=True)
        if playbook(server.endpoint) != 0:
            return 1
        print("\nSecond run: nothing to change.", flush=True)
        if playbook(server.endpoint) != 0:
            return 1
        print("\nStored in etcd:", flush=True)
        print(server.etcdctl("get", "--prefix", "/coreos.com/network/"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
