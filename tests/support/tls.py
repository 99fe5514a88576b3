"""A throwaway CA, server and client certificates for TLS tests (openssl CLI).

    make_pki(dir)                       one server cert (SAN 127.0.0.1) and one client cert, for one etcd
    make_ca(dir) -> (ca.pem, ca-key.pem)
    issue(dir, ca, "server", cn="etcd", ips=[...], dns=[...]) -> (cert, key)

Keys are written mode 0600.  Certificates are valid for 2 days.
"""

import os
import subprocess


def _run(*args):
    subprocess.run(list(args), check=True, capture_output=True)


def make_ca(directory, cn="test-ca"):
    """A self-signed CA in `directory`: returns (ca.pem, ca-key.pem)."""
    os.makedirs(directory, exist_ok=True)
    cert, key = os.path.join(directory, "ca.pem"), os.path.join(directory, "ca-key.pem")
    _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=%s" % cn,
         "-keyout", key, "-out", cert)
    os.chmod(key, 0o600)
    return cert, key


def issue(directory, ca, name, cn, ips=(), dns=(), usage="serverAuth,clientAuth"):
    """A certificate `<name>.pem` and its key `<name>-key.pem` signed by `ca` (a (cert, key) pair).

    `ips`/`dns` become the subjectAltName; `usage` the extendedKeyUsage.  Returns (cert, key).
    """
    cert, key = os.path.join(directory, name + ".pem"), os.path.join(directory, name + "-key.pem")
    csr, ext = os.path.join(directory, name + ".csr"), os.path.join(directory, name + ".ext.cnf")
    sans = ["IP:%s" % ip for ip in dict.fromkeys(ips)] + ["DNS:%s" % d for d in dict.fromkeys(dns)]
    with open(ext, "w") as fh:
        if sans:
            fh.write("subjectAltName=%s\n" % ",".join(sans))
        fh.write("extendedKeyUsage=%s\n" % usage)
    _run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=%s" % cn, "-keyout", key, "-out", csr)
    os.chmod(key, 0o600)
    _run("openssl", "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial", "-days", "2",
         "-extfile", ext, "-out", cert)
    os.unlink(csr)
    return cert, key


def make_pki(directory, server_ip="127.0.0.1"):
    """Writes ca.pem, server.pem/server-key.pem (SAN = server_ip), client.pem/client-key.pem; returns paths."""
    ca = make_ca(directory)
    p = {"ca.pem": ca[0], "ca-key.pem": ca[1]}
    for name, cn in (("server", "etcd"), ("client", "root")):
        p[name + ".pem"], p[name + "-key.pem"] = issue(directory, ca, name, cn, ips=[server_ip])
    return p
