"""The etcd password and the client key stay secret (issue 8): site.yml -vvv --diff on the TLS + auth etcd.

Before the run, one host's forwarder.env and client-key.pem are removed, so the
run writes both again (and --diff would show what it writes).
After the run, neither the flannel user's password (nor root's) nor any line of
the client key's PEM body appears in the ansible-playbook output, in any
host's journal, or in any file on the hosts except the two meant for them:
/etc/flannel/forwarder.env (the password) and /etc/flannel/pki/client-key.pem
(the key), both owned by root: the password file mode 0600, root:root (systemd
reads it), the key mode 0640 with the forwarder's group, flannel-forwarder (the
daemon reads it, as that user; no other user may).

The files are searched in each host's overlay upper dir on the controller
(everything the hosts wrote to their disk), its /var/lib/docker, and inside the
host in the tmpfs mounts (/run, /tmp, /dev/shm). The file name sorts after
test_site*.py, so on the session cluster this runs after them (test_site.py
wants a fresh cluster); it also passes alone on a fresh one.
"""

import os
import stat

import pytest

from cluster.flannel_helpers import ansible_tool, run_playbook

pytestmark = pytest.mark.cluster

ALLOWED = {"/etc/flannel/forwarder.env": "password", "/etc/flannel/pki/client-key.pem": "key"}


def secrets_of(cluster):
    ec = cluster.etcd
    if ec is None:
        pytest.fail("the secrets tests need the TLS + auth etcd; this cluster runs the plain one (--etcd-plain)",
                    pytrace=False)
    with open(ec.client_key) as fh:
        body = [line.strip() for line in fh if line.strip() and not line.startswith("-----")]
    assert len(body) > 10 and ec.password and ec.root_password
    return {"password": [ec.password], "root password": [ec.root_password], "key": body}


def find(text, secrets):
    """The kinds of secret ("password", "key", ...) that occur in `text`."""
    return sorted(kind for kind, needles in secrets.items() if any(n in text for n in needles))


def scan_tree(root, secrets, skip_dirs=()):
    """{path inside the host: [kinds]} for every regular file under `root` holding a secret."""
    found = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if os.path.join(dirpath, d) not in skip_dirs]
        for name in files:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
                if not stat.S_ISREG(st.st_mode) or st.st_size > 64 * 1024 * 1024:
                    continue
                with open(path, "rb") as fh:
                    data = fh.read().decode("latin-1")
            except OSError:
                continue
            kinds = find(data, secrets)
            if kinds:
                found["/" + os.path.relpath(path, root)] = kinds
    return found


def scan_host(cluster, host, secrets):
    """Secrets in the host's files: its overlay upper dir, its docker dir, and its tmpfs mounts."""
    h = cluster.state["hosts"][host]
    found = scan_tree(h["upper"], secrets)
    found.update({"/var/lib/docker" + p: k for p, k in scan_tree(h["docker_dir"], secrets).items()})
    patterns = "\n".join(n for needles in secrets.values() for n in needles) + "\n"
    # the needles go through stdin: they never show in the host's process list
    res = cluster.run(host, "grep -rlF -f /dev/stdin /run /tmp /dev/shm 2>/dev/null; true", input=patterns,
                      check=True)
    for path in res.stdout.split():
        found.setdefault(path, ["(grep)"])
    return found


@pytest.fixture(scope="module")
def converged(cluster):
    if not ansible_tool("ansible-playbook"):
        pytest.fail("ansible-playbook not installed (make venv)", pytrace=False)
    secrets = secrets_of(cluster)
    # on a converged cluster, make one host's secret files be written again (with --diff)
    cluster.run(cluster.hosts[0].name, "rm -f /etc/flannel/forwarder.env /etc/flannel/pki/client-key.pem", check=True)
    run = run_playbook(cluster, "site.yml", "-vvv", "--diff")
    log = os.path.join(cluster.state_dir, "site-secrets-run.log")
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(run.output)
    assert run.rc == 0, run.tail()
    return cluster, secrets, run


def test_output_of_site_vvv_diff_holds_no_password(converged):
    cluster, secrets, run = converged
    assert "forwarder.env" in run.output  # the environment file was written again in this run
    kinds = find(run.output, secrets)
    assert "password" not in kinds and "root password" not in kinds, \
        "the etcd password is in the ansible-playbook -vvv output (%s)" % cluster.state_dir


def test_output_of_site_vvv_diff_holds_no_client_key(converged):
    cluster, secrets, run = converged
    assert "/etc/flannel/pki/client-key.pem" in run.output  # the key was copied in this run
    assert "key" not in find(run.output, secrets), \
        "the client key is in the ansible-playbook -vvv --diff output (%s)" % cluster.state_dir


def test_journals_hold_no_secret(converged):
    cluster, secrets, _run = converged
    leaks = {}
    for host in cluster.host_names:
        journal = cluster.run(host, "journalctl --no-pager -o cat", check=True, timeout=120).stdout
        assert "flannel-forwarder" in journal or "flannel" in journal
        if find(journal, secrets):
            leaks[host] = find(journal, secrets)
    assert leaks == {}


def test_the_scan_finds_a_planted_secret(converged):
    """The file scan can fail: a password written where it does not belong is reported."""
    cluster, secrets, _run = converged
    host = cluster.host_names[-1]
    cluster.run(host, "tee /run/planted > /etc/systemd/system/planted.conf", check=True,
                input="Environment=PASSWORD=%s\n" % secrets["password"][0])
    try:
        found = scan_host(cluster, host, secrets)
    finally:
        cluster.run(host, "rm -f /etc/systemd/system/planted.conf /run/planted", check=True)
    assert found.get("/etc/systemd/system/planted.conf") == ["password"]
    assert "/run/planted" in found


def test_secrets_only_in_their_own_root_files(converged):
    cluster, secrets, _run = converged
    leaks = {}
    for host in cluster.host_names:
        found = scan_host(cluster, host, secrets)
        # the two files meant for them hold them (so the scan does see secrets) ...
        assert found.pop("/etc/flannel/forwarder.env", None) == ["password"], (host, found)
        assert found.pop("/etc/flannel/pki/client-key.pem", None) == ["key"], (host, found)
        if found:
            leaks[host] = found
        # ... and they are root's, the key readable by the forwarder's group too (no one else)
        res = cluster.run(host, ["stat", "-c", "%n %a %U %G"] + sorted(ALLOWED) + ["/etc/flannel/pki"], check=True)
        assert sorted(line.split() for line in res.stdout.splitlines()) == [
            ["/etc/flannel/forwarder.env", "600", "root", "root"],
            ["/etc/flannel/pki", "750", "root", "flannel-forwarder"],
            ["/etc/flannel/pki/client-key.pem", "640", "root", "flannel-forwarder"]], (host, res.stdout)
        res = cluster.run(host, "getent group flannel-forwarder", check=True)
        assert res.stdout.strip().split(":")[3] == "", (host, res.stdout)  # no member but its own user's primary
    assert leaks == {}, "secrets outside their files"
