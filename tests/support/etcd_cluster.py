"""A 3-member etcd cluster with TLS and authentication, for tests (stdlib, openssl, Debian's etcd 3.4).

    c = EtcdCluster(["10.213.0.1", "10.213.0.2", "10.213.0.3"], "/tmp/x/etcd").start()
    c.endpoints            # ["https://10.213.0.1:2379", ...]: what clients (the hosts) are given
    c.local_endpoints      # ["https://127.0.0.1:<port>", ...]: the same members over loopback (the controller)
    c.etcdctl("get", "--prefix", "/coreos.com/network/")                 # as root (stdout)
    c.etcdctl("put", "/coreos.com/network/x", "1", user="flannel")       # as the flannel user
    c.leader(); c.kill("etcd1"); c.stop("etcd2"); c.start("etcd2"); c.replace("etcd3")
    c.stop_all(); c.start_all(); c.compact(); c.health(); c.status(); c.member_list()
    c.destroy()            # stop every member (by recorded PID) and remove base_dir
    EtcdCluster.load(base_dir)   # the same cluster from another process (state in base_dir/cluster.json)

Each member is its own etcd process (start_new_session) with its own data dir
and log under base_dir/<name>/, a client URL https://<address>:<client_port>
and a peer URL https://<address>:<peer_port>; with `local=True` it also
listens on https://127.0.0.1:<free port>. Members may share an address when
the ports are left to the launcher (client_port=None: free ports).

TLS (client and peer, both with client certificates): a throwaway CA in
base_dir/pki, one server certificate per member whose SANs cover every member
address and 127.0.0.1, and one client certificate whose CN ("etcd-client") is
no etcd user, so a request with it is authenticated by user name and password
only; a second client certificate's CN is the flannel user, for etcd's
certificate authentication (a request with no token is the CN's user:
module_args(cert_auth=True)).

Authentication: user `root` (role root) and user `flannel` (role `flannel`:
readwrite on the key prefix `<prefix>/` and nothing else), random passwords.

Processes are only ever signalled by the PIDs recorded at start, checked
against their recorded start time; the state (PIDs, ports, passwords) is kept
in base_dir/cluster.json (mode 0600) after every change, so another process
(the cluster harness CLI) can stop what this one started.
"""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid

from . import tls
from . import claims
from .procs import pid_alive, proc_start_time, signal_recorded

STATE_FILE = "cluster.json"
CLIENT_CN = "etcd-client"


def free_port(host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _reap(pid):
    try:
        os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError, TypeError):
        pass


class EtcdError(RuntimeError):
    pass


class EtcdCluster:
    def __init__(self, addresses, base_dir, names=None, client_port=2379, peer_port=2380, local=True,
                 prefix="/coreos.com/network", user="flannel", tls_peers=True, auth_token="simple",
                 heartbeat_ms=100, election_ms=1000, binary="etcd", etcdctl_binary="etcdctl", log_level="warn",
                 _state=None):
        """`addresses`: one per member (3 for a real cluster).  `client_port`/`peer_port`: the same port on
        every member's own address, or None for free ports (members on one address).  `local`: also listen on
        127.0.0.1 (free ports) for `local_endpoints`.  `prefix`: the overlay prefix the `user` may use.
        `auth_token`: etcd's --auth-token ("simple", etcd's default, or "jwt": signed tokens every member
        accepts; the launcher makes the key)."""
        self.base_dir = os.path.abspath(base_dir)
        self.state_path = os.path.join(self.base_dir, STATE_FILE)
        self._procs = {}
        if _state is not None:
            self.state = _state
            return
        addresses = list(addresses)
        names = list(names or ["etcd%d" % (i + 1) for i in range(len(addresses))])
        if len(names) != len(addresses) or len(set(names)) != len(names):
            raise ValueError("one distinct name per address")
        if client_port is not None and len(set(addresses)) != len(addresses):
            raise ValueError("members on one address need client_port=None (free ports)")
        members = {}
        for i, (name, addr) in enumerate(zip(names, addresses)):
            loopback = addr.startswith("127.")
            d = os.path.join(self.base_dir, name)
            members[name] = {
                "index": i, "name": name, "address": addr,
                "client_port": client_port or free_port(addr),
                "peer_port": peer_port or free_port(addr),
                "local_port": free_port() if local and not loopback else None,
                "dir": d, "data_dir": os.path.join(d, "data"), "log": os.path.join(d, "etcd.log"),
                "pid": None, "start_time": None, "id": None, "cluster_state": "new",
            }
        self.state = {
            "version": 1, "phase": "new", "members": members, "prefix": "/" + prefix.strip("/"),
            "user": user, "tls_peers": bool(tls_peers), "auth_token": auth_token,
            "heartbeat_ms": heartbeat_ms, "election_ms": election_ms, "binary": binary,
            "etcdctl": etcdctl_binary, "log_level": log_level, "token": "overlay-flannel-" + uuid.uuid4().hex[:12],
            "pki": {}, "passwords": {},
        }

    # ------------------------------------------------------------------ state
    @classmethod
    def load(cls, base_dir):
        path = os.path.join(os.path.abspath(base_dir), STATE_FILE)
        with open(path) as fh:
            return cls(None, base_dir, _state=json.load(fh))

    def save(self):
        os.makedirs(self.base_dir, exist_ok=True)
        tmp = "%s.tmp-%d" % (self.state_path, os.getpid())
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(self.state, fh, indent=1, sort_keys=True)
        os.rename(tmp, self.state_path)

    def to_dict(self):
        """What the cluster harness records: everything but the passwords."""
        return {
            "base_dir": self.base_dir, "state_file": self.state_path, "phase": self.state["phase"],
            "endpoints": self.endpoints, "local_endpoints": self.local_endpoints, "prefix": self.prefix,
            "user": self.user, "pki": dict(self.state["pki"]), "auth_token": self.state["auth_token"],
            "members": {n: {k: m[k] for k in ("address", "client_port", "peer_port", "local_port", "data_dir",
                                              "log", "pid", "start_time", "id")}
                        for n, m in self.state["members"].items()},
        }

    # ------------------------------------------------------------------ description
    @property
    def names(self):
        return [n for n, _member in sorted(self.state["members"].items(), key=lambda kv: kv[1]["index"])]

    @property
    def members(self):
        return [self.state["members"][n] for n in self.names]

    def member(self, name):
        try:
            return self.state["members"][name]
        except KeyError:
            raise KeyError("no etcd member %r (members: %s)" % (name, self.names)) from None

    @property
    def prefix(self):
        return self.state["prefix"]

    @property
    def user(self):
        return self.state["user"]

    @property
    def password(self):
        """The password of `user` (the flannel user)."""
        return self.state["passwords"].get(self.user)

    @property
    def root_password(self):
        return self.state["passwords"].get("root")

    @property
    def ca_cert(self):
        return self.state["pki"].get("ca")

    @property
    def client_cert(self):
        return self.state["pki"].get("client_cert")

    @property
    def client_key(self):
        return self.state["pki"].get("client_key")

    def client_url(self, name):
        m = self.member(name)
        return "https://%s:%d" % (m["address"], m["client_port"])

    def local_url(self, name):
        m = self.member(name)
        return "https://127.0.0.1:%d" % m["local_port"] if m["local_port"] else self.client_url(name)

    def peer_url(self, name):
        m = self.member(name)
        return "%s://%s:%d" % ("https" if self.state["tls_peers"] else "http", m["address"], m["peer_port"])

    @property
    def endpoints(self):
        return [self.client_url(n) for n in self.names]

    @property
    def local_endpoints(self):
        return [self.local_url(n) for n in self.names]

    def module_args(self, local=True, user=None, cert_auth=False):
        """The overlay.flannel modules' etcd options for this cluster (as `user`, default the flannel user);
        with cert_auth, as the flannel user by the CN of its client certificate, with no password."""
        if cert_auth:
            p = self.state["pki"]
            return dict(etcd_endpoints=self.local_endpoints if local else self.endpoints, etcd_prefix=self.prefix,
                        etcd_ca_cert=self.ca_cert, etcd_client_cert=p["user_cert"], etcd_client_key=p["user_key"])
        user = user or self.user
        return dict(etcd_endpoints=self.local_endpoints if local else self.endpoints, etcd_prefix=self.prefix,
                    etcd_ca_cert=self.ca_cert, etcd_client_cert=self.client_cert, etcd_client_key=self.client_key,
                    etcd_user=user, etcd_password=self.state["passwords"][user])

    def client(self, only=None):
        """The collection's etcd adapter (EtcdClient) on this cluster over loopback, as the flannel user;
        with `only` (a member's name), on that member alone."""
        from ansible_collections.overlay.flannel.plugins.module_utils.etcd_client import EtcdClient
        a = self.module_args()
        endpoints = [self.local_url(only)] if only else a["etcd_endpoints"]
        return EtcdClient(endpoints, ca_cert=a["etcd_ca_cert"], client_cert=a["etcd_client_cert"],
                          client_key=a["etcd_client_key"], user=a["etcd_user"], password=a["etcd_password"])

    # ------------------------------------------------------------------ processes
    def alive(self, name):
        m = self.member(name)
        _reap(m["pid"])
        return pid_alive(m["pid"], m["start_time"])

    def pids(self):
        """{member: pid} of the members that run now."""
        return {n: self.member(n)["pid"] for n in self.names if self.alive(n)}

    def leftovers(self):
        return ["etcd member %s pid %s" % (n, p) for n, p in self.pids().items()]

    def _argv(self, name, initial_cluster=None):
        m, s, p = self.member(name), self.state, self.state["pki"]
        listen = [self.client_url(name)] + ([self.local_url(name)] if m["local_port"] else [])
        if initial_cluster is None:
            initial_cluster = ",".join("%s=%s" % (n, self.peer_url(n)) for n in self.names)
        argv = [s["binary"], "--name", name, "--data-dir", m["data_dir"],
                "--listen-client-urls", ",".join(listen), "--advertise-client-urls", self.client_url(name),
                "--listen-peer-urls", self.peer_url(name), "--initial-advertise-peer-urls", self.peer_url(name),
                "--initial-cluster", initial_cluster, "--initial-cluster-state", m["cluster_state"],
                "--initial-cluster-token", s["token"],
                "--heartbeat-interval", str(s["heartbeat_ms"]), "--election-timeout", str(s["election_ms"]),
                "--cert-file", p["members"][name]["cert"], "--key-file", p["members"][name]["key"],
                "--trusted-ca-file", p["ca"], "--client-cert-auth",
                "--logger", "zap", "--log-outputs", "stderr", "--log-level", s["log_level"]]
        if s["tls_peers"]:
            argv += ["--peer-cert-file", p["members"][name]["cert"], "--peer-key-file", p["members"][name]["key"],
                     "--peer-trusted-ca-file", p["ca"], "--peer-client-cert-auth"]
        if s["auth_token"] == "jwt":
            argv += ["--auth-token", "jwt,pub-key=%s,priv-key=%s,sign-method=RS256,ttl=10m"
                     % (p["jwt_pub"], p["jwt_key"])]
        else:
            argv += ["--auth-token", s["auth_token"]]
        return argv

    def _launch(self, name, initial_cluster=None):
        m = self.member(name)
        if self.alive(name):
            raise EtcdError("etcd member %s already runs (pid %s)" % (name, m["pid"]))
        os.makedirs(m["dir"], exist_ok=True)
        argv = self._argv(name, initial_cluster)
        with open(m["log"], "ab") as log:
            log.write(("\n==== start %s at %s ====\n" % (name, time.ctime())).encode())
            log.flush()
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, close_fds=True)
        claims.record(pids=[proc.pid])
        self._procs[name] = proc
        m.update(pid=proc.pid, start_time=proc_start_time(proc.pid), argv=argv)
        self.save()
        return proc

    def _make_pki(self):
        pki = os.path.join(self.base_dir, "pki")
        os.makedirs(pki, exist_ok=True)
        os.chmod(pki, 0o700)
        ca = tls.make_ca(pki, cn="overlay-flannel-test-etcd-ca")
        ips = [m["address"] for m in self.members] + ["127.0.0.1"]
        p = {"dir": pki, "ca": ca[0], "ca_key": ca[1], "members": {}}
        for name in self.names:
            cert, key = tls.issue(pki, ca, "member-" + name, cn=name, ips=ips, dns=["localhost"])
            p["members"][name] = {"cert": cert, "key": key}
        p["client_cert"], p["client_key"] = tls.issue(pki, ca, "client", cn=CLIENT_CN, usage="clientAuth")
        p["user_cert"], p["user_key"] = tls.issue(pki, ca, "client-" + self.user, cn=self.user, usage="clientAuth")
        if self.state["auth_token"] == "jwt":
            p["jwt_key"], p["jwt_pub"] = os.path.join(pki, "jwt-key.pem"), os.path.join(pki, "jwt.pub.pem")
            subprocess.run(["openssl", "genrsa", "-out", p["jwt_key"], "2048"], check=True, capture_output=True)
            subprocess.run(["openssl", "rsa", "-in", p["jwt_key"], "-pubout", "-out", p["jwt_pub"]], check=True,
                           capture_output=True)
        self.state["pki"] = p

    def start(self, name=None, timeout=30):
        """Without `name`: create the PKI, start every member as a new cluster, enable auth (-> self).
        With `name`: start that (stopped) member again on its data dir and wait until it is healthy."""
        if name is not None:
            self._launch(name)
            self.wait_healthy([name], timeout=timeout)
            return self
        if self.state["phase"] != "new":
            raise EtcdError("cluster in %s was already started (%s)" % (self.base_dir, self.state["phase"]))
        os.makedirs(self.base_dir, exist_ok=True)
        self._make_pki()
        self.state["passwords"] = {"root": secrets.token_urlsafe(18), self.user: secrets.token_urlsafe(18)}
        self.state["phase"] = "starting"
        self.save()
        try:
            for n in self.names:
                self._launch(n)
            self.wait_healthy(timeout=timeout, auth=False)
            for n in self.names:
                self.member(n)["cluster_state"] = "existing"
            self._setup_auth()
            self.state["phase"] = "up"
            self.save()
            self._record_ids()
        except Exception:
            self.stop_all()
            self.state["phase"] = "failed"
            self.save()
            raise
        return self

    def _setup_auth(self):
        pw, user = self.state["passwords"], self.user
        role_prefix = self.prefix.rstrip("/") + "/"
        steps = [["user", "add", "root", "--new-user-password", pw["root"]],
                 ["role", "add", "root"],
                 ["user", "grant-role", "root", "root"],
                 ["role", "add", user],
                 ["role", "grant-permission", user, "--prefix=true", "readwrite", role_prefix],
                 ["user", "add", user, "--new-user-password", pw[user]],
                 ["user", "grant-role", user, user],
                 ["auth", "enable"]]
        for argv in steps:
            res = self._etcdctl(argv, user=None, check=False)
            if res.returncode != 0 and not (argv[:3] == ["role", "add", "root"] and "already exists" in res.stderr):
                raise EtcdError("etcdctl %s failed: %s" % (" ".join(argv[:3]), res.stderr.strip()))

    def _record_ids(self):
        for entry in self.member_list():
            if entry.get("name") in self.state["members"]:
                self.member(entry["name"])["id"] = entry["id"]
        self.save()

    def _wait_gone(self, name, timeout):
        m = self.member(name)
        proc = self._procs.get(name)
        deadline = time.monotonic() + timeout
        while self.alive(name):
            if proc is not None and proc.pid == m["pid"]:
                try:
                    proc.wait(0.05)
                except subprocess.TimeoutExpired:
                    pass
            else:
                time.sleep(0.05)
            if time.monotonic() > deadline:
                return False
        return True

    def kill(self, name):
        """SIGKILL the member (by its recorded PID); its data stays."""
        m = self.member(name)
        if signal_recorded(m["pid"], m["start_time"], signal.SIGKILL):
            if not self._wait_gone(name, 10):
                raise EtcdError("etcd member %s (pid %s) did not die" % (name, m["pid"]))
        self._procs.pop(name, None)

    def stop(self, name, timeout=10):
        """SIGTERM the member (SIGKILL after `timeout`); its data stays."""
        m = self.member(name)
        if signal_recorded(m["pid"], m["start_time"], signal.SIGTERM) and not self._wait_gone(name, timeout):
            self.kill(name)
        self._procs.pop(name, None)

    def stop_all(self, timeout=10):
        for n in self.names:
            m = self.member(n)
            signal_recorded(m["pid"], m["start_time"], signal.SIGTERM)
        for n in self.names:
            if not self._wait_gone(n, timeout):
                self.kill(n)
            self._procs.pop(n, None)

    def start_all(self, timeout=30):
        """Start every stopped member (at once: a lone member has no quorum) and wait until all are healthy."""
        for n in self.names:
            if not self.alive(n):
                self._launch(n)
        self.wait_healthy(timeout=timeout)
        return self

    def destroy(self):
        """Stop every member and remove base_dir.  Returns what still runs ([] when clean)."""
        self.stop_all()
        left = self.leftovers()
        if not left:
            shutil.rmtree(self.base_dir, ignore_errors=True)
        return left

    def replace(self, name, timeout=60):
        """Replace a member as an operator does: member remove, wipe its data dir, member add (same name,
        peer URL and client URL), start it with --initial-cluster-state existing, wait until all are healthy."""
        others = [n for n in self.names if n != name and self.alive(n)]
        if not others:
            raise EtcdError("no other member runs: cannot replace %s" % name)
        ids = {e["name"]: e["id"] for e in self.member_list()}
        via = [self.local_url(n) for n in others]
        self.kill(name)
        if name in ids:
            self._reconfig(["member", "remove", ids[name]], via, timeout)
        shutil.rmtree(self.member(name)["data_dir"], ignore_errors=True)
        out = self._reconfig(["member", "add", name, "--peer-urls", self.peer_url(name), "-w", "json"], via,
                             timeout).stdout
        added = json.loads(out)
        initial = ",".join("%s=%s" % (e.get("name") or name, ",".join(e["peerURLs"])) for e in added["members"])
        m = self.member(name)
        m["cluster_state"] = "existing"
        m["id"] = "%x" % added["member"]["ID"]
        self._launch(name, initial_cluster=initial)
        self.wait_healthy(timeout=timeout)
        self._record_ids()
        return self

    def _reconfig(self, args, endpoints, timeout):
        """A membership change; etcd refuses one ("unhealthy cluster") until the members that run have been
        connected for a few seconds (its strict reconfiguration check), and one can time out while the
        survivors elect a leader (the killed member may have been it), so retry both.  A retried change
        may find that the timed-out attempt was applied after all: a remove then reports the member
        unknown, an add its peer URL taken; both count as done."""
        deadline = time.monotonic() + timeout
        transient = ("unhealthy cluster", "context deadline exceeded", "leader changed", "no leader")
        retried = False
        while True:
            res = self._etcdctl(args, endpoints=endpoints, check=False)
            if res.returncode == 0:
                return res
            if retried and args[:2] == ["member", "remove"] and "member not found" in res.stderr:
                return res
            if retried and args[:2] == ["member", "add"] and "Peer URLs already exists" in res.stderr:
                return self._added_after_timeout(args[2], endpoints)
            if not any(w in res.stderr for w in transient) or time.monotonic() > deadline:
                raise EtcdError("etcdctl %s failed: %s" % (" ".join(args), res.stderr.strip()[-500:]))
            retried = True
            time.sleep(0.5)

    def _added_after_timeout(self, name, endpoints):
        """What `member add -w json` prints, rebuilt from the member list (the add timed out but was applied)."""
        out = json.loads(self._etcdctl(["member", "list", "-w", "json"], endpoints=endpoints).stdout)
        mine = [e for e in out["members"] if self.peer_url(name) in e.get("peerURLs", [])]
        return subprocess.CompletedProcess([], 0, stdout=json.dumps({"member": mine[0], "members": out["members"]}),
                                           stderr="")

    # ------------------------------------------------------------------ etcdctl
    def _etcdctl(self, args, user="root", endpoints=None, check=True, timeout=30, input=None):
        env = dict(os.environ, ETCDCTL_API="3")
        for k in ("ETCDCTL_USER", "ETCDCTL_PASSWORD", "ETCDCTL_ENDPOINTS"):
            env.pop(k, None)
        if user is not None:
            env["ETCDCTL_USER"] = user
            env["ETCDCTL_PASSWORD"] = self.state["passwords"][user]
        p = self.state["pki"]
        argv = [self.state["etcdctl"], "--endpoints", ",".join(endpoints or self.local_endpoints),
                "--cacert", p["ca"], "--cert", p["client_cert"], "--key", p["client_key"],
                "--dial-timeout", "2s", "--command-timeout", "5s"] + list(args)
        res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, input=input, check=False)
        if check and res.returncode != 0:
            raise EtcdError("etcdctl %s (as %s) failed (rc=%d): %s" % (" ".join(args), user, res.returncode,
                                                                       res.stderr.strip()))
        return res

    def etcdctl(self, *args, user="root", endpoints=None, check=True, timeout=30, input=None):
        """Run etcdctl (v3, TLS, as `user`: "root", the flannel user, or None for no credentials).
        Returns stdout; with check=False the CompletedProcess (rc, stdout, stderr)."""
        res = self._etcdctl(args, user=user, endpoints=endpoints, check=check, timeout=timeout, input=input)
        return res.stdout if check else res

    def get_prefix(self, prefix=None, user="root"):
        """{key: value} under `prefix` (default `<prefix>/`)."""
        import base64
        out = self.etcdctl("get", "--prefix", prefix or self.prefix.rstrip("/") + "/", "-w", "json", user=user)
        kvs = json.loads(out).get("kvs", [])
        return {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv.get("value", "")).decode() for kv in kvs}

    def member_list(self):
        """[{id (hex), name, peerURLs, clientURLs}] as the cluster reports it."""
        out = json.loads(self.etcdctl("member", "list", "-w", "json"))
        return [{"id": "%x" % e["ID"], "name": e.get("name", ""), "peerURLs": e.get("peerURLs", []),
                 "clientURLs": e.get("clientURLs", [])} for e in out.get("members", [])]

    def endpoint_status(self, names=None):
        """{member: {"leader": bool, "revision", "raft_term", "member_id", "db_size"} or {"error": ...}}."""
        names = names or self.names
        out = {}
        for n in names:
            if not self.alive(n):
                out[n] = {"error": "not running"}
                continue
            res = self._etcdctl(["endpoint", "status", "-w", "json"], endpoints=[self.local_url(n)], check=False,
                                timeout=15)
            if res.returncode != 0:
                out[n] = {"error": res.stderr.strip()[-300:]}
                continue
            st = json.loads(res.stdout)[0]["Status"]
            out[n] = {"member_id": "%x" % st["header"]["member_id"], "leader": st["leader"] == st["header"]["member_id"],
                      "revision": st["header"]["revision"], "raft_term": st["raftTerm"], "db_size": st["dbSize"]}
        return out

    def leader(self):
        """The name of the current leader (None when no member reports one)."""
        for n, st in self.endpoint_status().items():
            if st.get("leader"):
                return n
        return None

    def revision(self):
        for st in self.endpoint_status().values():
            if "revision" in st:
                return st["revision"]
        raise EtcdError("no member answers")

    def compact(self, revision=None):
        """Compact (physically) up to `revision` (default: the current one).  Returns the revision."""
        revision = revision or self.revision()
        self.etcdctl("compact", str(revision), "--physical")
        return revision

    def health(self, names=None):
        """{member: True/False} from `etcdctl endpoint health` on each member."""
        out = {}
        for n in names or self.names:
            if not self.alive(n):
                out[n] = False
                continue
            res = self._etcdctl(["endpoint", "health"], endpoints=[self.local_url(n)], check=False, timeout=15,
                                user="root" if self.state["phase"] == "up" else None)
            out[n] = res.returncode == 0 and "is healthy" in res.stdout + res.stderr
        return out

    def status(self):
        """Per member: address, URLs, pid, alive, and (when it answers) leader/revision/raft term."""
        st = self.endpoint_status()
        return {n: dict(address=self.member(n)["address"], endpoint=self.client_url(n),
                        local_endpoint=self.local_url(n), pid=self.member(n)["pid"], alive=self.alive(n), **st[n])
                for n in self.names}

    def wait_healthy(self, names=None, timeout=30, auth=True):
        names = names or self.names
        deadline = time.monotonic() + timeout
        while True:
            for n in names:
                proc = self._procs.get(n)
                if proc is not None and proc.poll() is not None:
                    raise EtcdError("etcd member %s exited with %s; log %s:\n%s" % (
                        n, proc.returncode, self.member(n)["log"], self.log(n)))
            res = self.health(names) if auth else {
                n: self._etcdctl(["endpoint", "health"], user=None, endpoints=[self.local_url(n)],
                                 check=False, timeout=15).returncode == 0 for n in names}
            if all(res.values()):
                return
            if time.monotonic() > deadline:
                raise EtcdError("etcd members not healthy in %ss: %s; logs in %s/*/etcd.log"
                                % (timeout, res, self.base_dir))
            time.sleep(0.2)

    def log(self, name, tail=3000):
        try:
            with open(self.member(name)["log"], encoding="utf-8", errors="replace") as fh:
                return fh.read()[-tail:]
        except OSError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.destroy()
