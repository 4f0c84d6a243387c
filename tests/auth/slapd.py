"""A real OpenLDAP server (Debian's `slapd`) for the tests, in a temporary directory.

It gets a throw-away CA and a certificate for 127.0.0.1, refuses simple binds on an
unencrypted connection (`security simple_bind=128`, so a test passes only if StartTLS
really happened), and is loaded with `slapadd` before it starts. Missing `slapd` fails
the tests under CI (`make slapd` installs it) and skips them elsewhere.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

SUFFIX = "dc=example,dc=org"
ADMIN_DN = f"cn=admin,{SUFFIX}"
ADMIN_PASSWORD = "admin-secret"
SERVICE_DN = f"cn=flowloom,ou=services,{SUFFIX}"
SERVICE_PASSWORD = "service-secret"
_SLAPD = shutil.which("slapd") or "/usr/sbin/slapd"
_SLAPADD = shutil.which("slapadd") or "/usr/sbin/slapadd"


@dataclass(frozen=True)
class Slapd:
    url: str
    ca_file: Path


def require_slapd() -> None:
    """Skip without slapd, except under CI, where its absence is a failure."""
    if Path(_SLAPD).exists() and Path(_SLAPADD).exists():
        return
    message = "slapd is missing: make slapd (apt-get install slapd ldap-utils)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "FlowLoom test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = (folder / "ca.pem", folder / "server.pem", folder / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def _person(uid: str, name: str, password: str) -> str:
    given, family = name.split(" ", 1)
    return (
        f"dn: uid={uid},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {uid}\n"
        f"cn: {name}\ngivenName: {given}\nsn: {family}\nmail: {uid}@example.org\n"
        f"userPassword: {password}\n"
    )


def _group(name: str, members: list[str]) -> str:
    lines = [f"dn: cn={name},ou=groups,{SUFFIX}", "objectClass: groupOfNames", f"cn: {name}"]
    lines += [f"member: uid={m},ou=people,{SUFFIX}" for m in members]
    return "\n".join(lines) + "\n"


SEED = "\n".join(
    [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\n"
        "o: Example\n",
        f"dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n",
        f"dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n",
        f"dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services\n",
        f"dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
        f"cn: flowloom\nuserPassword: {SERVICE_PASSWORD}\n",
        _person("ada", "Ada Lovelace", "ada-password-1"),
        _person("alan", "Alan Turing", "alan-password-1"),
        _person("eve", "Eve Outsider", "eve-password-1"),
        _group("flowloom-users", ["ada", "alan"]),
        _group("engineers", ["ada", "alan"]),
        _group("auditors", ["alan", "eve"]),
    ]
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running_slapd(folder: Path) -> Iterator[Slapd]:
    """slapd on a free loopback port, with its own configuration and database in
    `folder`; stopped (by its pid) when the block ends."""
    require_slapd()
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "data"
    data.mkdir()
    ca, cert, key = _certificates(folder)
    config = folder / "slapd.conf"
    config.write_text(
        "\n".join(
            [
                "include /etc/ldap/schema/core.schema",
                "include /etc/ldap/schema/cosine.schema",
                "include /etc/ldap/schema/inetorgperson.schema",
                f"pidfile {folder / 'slapd.pid'}",
                "modulepath /usr/lib/ldap",
                "moduleload back_mdb",
                f"TLSCACertificateFile {ca}",
                f"TLSCertificateFile {cert}",
                f"TLSCertificateKeyFile {key}",
                "security simple_bind=128",
                "database mdb",
                f'suffix "{SUFFIX}"',
                f'rootdn "{ADMIN_DN}"',
                f"rootpw {ADMIN_PASSWORD}",
                f"directory {data}",
                "access to attrs=userPassword by anonymous auth by * none",
                "access to * by * read",
                "",
            ]
        )
    )
    seed = folder / "seed.ldif"
    seed.write_text(SEED)
    subprocess.run(
        [_SLAPADD, "-f", str(config), "-l", str(seed)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    port = _free_port()
    log = (folder / "slapd.log").open("wb")
    process = subprocess.Popen(
        [_SLAPD, "-f", str(config), "-h", f"ldap://127.0.0.1:{port}/", "-d", "0"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "slapd did not start: " + (folder / "slapd.log").read_text()[-2000:]
                    ) from None
                time.sleep(0.05)
        yield Slapd(url=f"ldap://127.0.0.1:{port}", ca_file=ca)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
