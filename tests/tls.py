"""Certificates for the TLS tests, made with the openssl command line.

:func:`issue` makes a CA and a server certificate for 127.0.0.1 as a real CA issues them, so they
pass strict X.509 verification (``VERIFY_X509_STRICT``, which Python sets by default from 3.13):
the CA with basicConstraints critical CA:TRUE, keyUsage critical keyCertSign and cRLSign, and a
subject key identifier; the server's with keyUsage digitalSignature and keyEncipherment,
extendedKeyUsage serverAuth, subjectAltName IP:127.0.0.1 and both key identifiers. Passing other
``ca`` or ``server`` extensions makes a chain strict verification refuses, such as
:data:`CA_WITHOUT_KEY_USAGE`: what a hand-rolled ``openssl req -x509`` CA often looks like.

Every extension is named in a config file written here (not taken from the system's
openssl.cnf), so the certificates are the same whatever that file holds.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: A CA certificate's extensions, as a CA issues them (RFC 5280 4.2.1.2, 4.2.1.3, 4.2.1.9).
CA: Mapping[str, str] = {
    "basicConstraints": "critical, CA:TRUE",
    "keyUsage": "critical, keyCertSign, cRLSign",
    "subjectKeyIdentifier": "hash",
}
#: A server certificate's extensions, as a CA issues them.
SERVER: Mapping[str, str] = {
    "basicConstraints": "critical, CA:FALSE",
    "keyUsage": "critical, digitalSignature, keyEncipherment",
    "extendedKeyUsage": "serverAuth",
    "subjectAltName": "IP:127.0.0.1",
    "subjectKeyIdentifier": "hash",
    "authorityKeyIdentifier": "keyid:always",
}
#: A CA with no keyUsage extension: accepted without strict verification, refused with it
#: (OpenSSL: "CA cert does not include key usage extension").
CA_WITHOUT_KEY_USAGE: Mapping[str, str] = {k: v for k, v in CA.items() if k != "keyUsage"}


@dataclass(frozen=True)
class Chain:
    """The files of one issued chain (PEM)."""

    ca: Path  # the CA certificate, which a client trusts (ssl_ca_certs)
    cert: Path  # the server's certificate
    key: Path  # the server's private key, unencrypted


def issue(
    directory: Path,
    *,
    ca: Mapping[str, str] = CA,
    server: Mapping[str, str] = SERVER,
    name: str = "thorcut test CA",
    stem: str = "",
) -> Chain:
    """Make a CA named ``name`` and a server certificate for 127.0.0.1 it signed, in ``directory``.

    Both are valid for a day. ``stem`` prefixes the file names, so one directory can hold several
    chains. Raises AssertionError, with openssl's stderr, if openssl fails.
    """
    conf = directory / f"{stem}openssl.cnf"
    conf.write_text(_config(ca=ca, server=server))
    chain = Chain(directory / f"{stem}ca.crt", directory / f"{stem}server.crt", directory / f"{stem}server.key")
    ca_key, csr = directory / f"{stem}ca.key", directory / f"{stem}server.csr"
    _openssl("req", "-x509", "-config", conf, "-extensions", "ca_ext", "-newkey", "rsa:2048", "-nodes",
             "-keyout", ca_key, "-out", chain.ca, "-days", "1", "-subj", f"/CN={name}")  # fmt: skip
    _openssl("req", "-new", "-config", conf, "-newkey", "rsa:2048", "-nodes", "-keyout", chain.key, "-out", csr,
             "-subj", "/CN=127.0.0.1")  # fmt: skip
    _openssl("x509", "-req", "-in", csr, "-CA", chain.ca, "-CAkey", ca_key, "-set_serial", str(secrets.randbits(63)),
             "-days", "1", "-out", chain.cert, "-extfile", conf, "-extensions", "server_ext")  # fmt: skip
    return chain


def _config(*, ca: Mapping[str, str], server: Mapping[str, str]) -> str:
    def section(name: str, extensions: Mapping[str, str]) -> str:
        return f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in extensions.items())

    return "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\n" + section("ca_ext", ca) + section("server_ext", server)


def _openssl(*args: str | Path) -> None:
    try:
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        raise AssertionError(f"openssl {args[0]} failed: {exc.stderr}") from exc
