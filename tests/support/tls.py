"""A throwaway CA, server and client certificates for TLS tests (openssl CLI)."""

import os
import subprocess


def _run(*args):
    subprocess.run(list(args), check=True, capture_output=True)


def make_pki(directory, server_ip="127.0.0.1"):
    """Writes ca.pem, server.pem/server-key.pem (SAN = server_ip), client.pem/client-key.pem; returns paths."""
    p = {name: os.path.join(directory, name) for name in
         ("ca.pem", "ca-key.pem", "server.pem", "server-key.pem", "client.pem", "client-key.pem", "ext.cnf")}
    _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
         "-keyout", p["ca-key.pem"], "-out", p["ca.pem"])
    with open(p["ext.cnf"], "w") as fh:
        fh.write("subjectAltName=IP:%s\nextendedKeyUsage=serverAuth,clientAuth\n" % server_ip)
    for name, cn in (("server", "etcd"), ("client", "root")):
        csr = os.path.join(directory, name + ".csr")
        _run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=%s" % cn,
             "-keyout", p[name + "-key.pem"], "-out", csr)
        _run("openssl", "x509", "-req", "-in", csr, "-CA", p["ca.pem"], "-CAkey", p["ca-key.pem"],
             "-CAcreateserial", "-days", "2", "-extfile", p["ext.cnf"], "-out", p[name + ".pem"])
    return p
