"""A real SAML 2.0 identity provider on loopback: Debian's SimpleSAMLphp under `php -S`.

`SimpleSamlIdp` writes a complete SimpleSAMLphp configuration (config.php, an
exampleauth:UserPass source with test users, IdP-hosted and SP-remote metadata, a fresh
signing key) into a temporary directory and serves /usr/share/simplesamlphp/www with
PHP's built-in web server. Start-up is bounded; nothing outside the directory is written.
Service providers are registered before `start` from their own metadata's facts (entity
id, ACS and SLO URLs, certificate), as an administrator would paste them in.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

WWW = Path("/usr/share/simplesamlphp/www")
PHP = "php"
START_TIMEOUT = 60.0
PASSWORD = "correct horse battery staple"


def available() -> str | None:
    """Why the IdP cannot run here, or None when PHP and SimpleSAMLphp are installed."""
    if shutil.which(PHP) is None:
        return "php is missing: apt-get install php-cli (make saml)"
    if not (WWW / "saml2" / "idp" / "SSOService.php").is_file():
        return "SimpleSAMLphp is missing: apt-get install simplesamlphp (make saml)"
    if shutil.which("xmlsec1") is None:
        return "xmlsec1 is missing: apt-get install xmlsec1 (make saml)"
    modules = subprocess.run([PHP, "-m"], capture_output=True, text=True, timeout=60).stdout
    if "dom" not in modules.split():
        return "PHP's XML support is missing: apt-get install php-xml (make saml)"
    return None


def self_signed(common_name: str, days: int = 30) -> tuple[bytes, bytes]:
    """A fresh RSA key and self-signed certificate, both PEM (SAML metadata keys)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def cert_body(pem: bytes) -> str:
    """The base64 of a PEM certificate, as metadata and SimpleSAMLphp's certData want it."""
    lines = pem.decode().strip().splitlines()
    return "".join(line for line in lines if not line.startswith("-----"))


@dataclass
class IdpUser:
    """A user of the IdP's exampleauth:UserPass source."""

    username: str
    email: str
    name: str
    groups: list[str] = field(default_factory=list)


@dataclass
class RemoteSp:
    """What the IdP knows of one service provider."""

    entity_id: str
    acs_url: str
    slo_url: str
    cert_pem: bytes
    encrypt: bool = False


def _php(value: object) -> str:
    """A PHP literal for strings, booleans, lists and string-keyed dicts (via JSON)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_php(v) for v in value) + "]"
    if isinstance(value, dict):
        return "[" + ", ".join(f"{_php(str(k))} => {_php(v)}" for k, v in value.items()) + "]"
    raise TypeError(f"no PHP literal for {type(value).__name__}")


class SimpleSamlIdp:
    """SimpleSAMLphp as a SAML 2.0 IdP on 127.0.0.1, configured in `root`."""

    def __init__(self, root: Path, users: list[IdpUser]) -> None:
        self.root = root
        self.users = users
        self.sps: list[RemoteSp] = []
        self._process: subprocess.Popen[bytes] | None = None
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        self.base = f"http://127.0.0.1:{self.port}"
        self.entity_id = f"{self.base}/saml2/idp/metadata.php"
        self.key_pem, self.cert_pem = self_signed("simplesamlphp-idp.test")
        self.log = root / "php.log"

    @property
    def sso_url(self) -> str:
        return f"{self.base}/saml2/idp/SSOService.php"

    @property
    def slo_url(self) -> str:
        return f"{self.base}/saml2/idp/SingleLogoutService.php"

    def idp_initiated_url(self, sp_entity_id: str, relay_state: str | None = None) -> str:
        """The IdP's own link that sends an unsolicited assertion to an SP."""
        query = httpx.QueryParams({"spentityid": sp_entity_id})
        if relay_state is not None:
            query = query.set("RelayState", relay_state)
        return f"{self.base}/saml2/idp/SSOService.php?{query}"

    def register(self, sp: RemoteSp) -> None:
        """Add a service provider; call `reload` (or register before `start`)."""
        self.sps = [s for s in self.sps if s.entity_id != sp.entity_id] + [sp]
        self._write_sp_metadata()

    def metadata_xml(self) -> str:
        """The IdP's metadata, as an administrator downloads it for the SP."""
        response = httpx.get(f"{self.base}/saml2/idp/metadata.php", timeout=30)
        response.raise_for_status()
        return response.text

    def _write(self) -> None:
        config = self.root / "config"
        metadata = self.root / "metadata"
        certs = self.root / "cert"
        for folder in (config, metadata, certs, self.root / "tmp", self.root / "log"):
            folder.mkdir(parents=True, exist_ok=True)
        (certs / "idp.pem").write_bytes(self.key_pem)
        (certs / "idp.crt").write_bytes(self.cert_pem)
        settings = {
            "baseurlpath": self.base + "/",
            "certdir": str(certs) + "/",
            "loggingdir": str(self.root / "log") + "/",
            "datadir": str(self.root / "tmp") + "/",
            "tempdir": str(self.root / "tmp"),
            "metadatadir": str(metadata) + "/",
            "secretsalt": "flowloom-test-salt-not-secret",
            "auth.adminpassword": "admin-not-used",
            "admin.protectindexpage": True,
            "admin.protectmetadata": False,
            "technicalcontact_email": "idp@example.test",
            "timezone": "UTC",
            "logging.level": 7,
            "logging.handler": "file",
            "logging.logfile": "simplesamlphp.log",
            "enable.saml20-idp": True,
            "enable.shib13-idp": False,
            "module.enable": {"exampleauth": True, "core": True, "saml": True},
            "session.cookie.name": "SimpleSAMLSessionID",
            "session.phpsession.cookiename": "SimpleSAML",
            "session.phpsession.savepath": str(self.root / "tmp"),
            "session.cookie.secure": False,
            "session.cookie.samesite": None,
            "store.type": "phpsession",
            "language.default": "en",
            "theme.use": "default",
            "trusted.url.domains": [f"127.0.0.1:{self.port}"],
        }
        body = ",\n".join(
            f"    {_php(k)} => {'null' if v is None else _php(v)}" for k, v in settings.items()
        )
        (config / "config.php").write_text(f"<?php\n$config = [\n{body}\n];\n")
        accounts = {
            f"{u.username}:{PASSWORD}": {
                "uid": [u.username],
                "email": [u.email],
                "displayName": [u.name],
                "groups": u.groups,
            }
            for u in self.users
        }
        (config / "authsources.php").write_text(
            "<?php\n$config = [\n"
            "    'admin' => ['core:AdminPassword'],\n"
            "    'example-userpass' => array_merge(['exampleauth:UserPass'], "
            f"{_php(accounts)}),\n];\n"
        )
        idp = {
            "host": "__DEFAULT__",
            "privatekey": "idp.pem",
            "certificate": "idp.crt",
            "auth": "example-userpass",
            "saml20.sign.assertion": True,
            "saml20.sign.response": False,
            "sign.logout": True,
            "redirect.sign": True,
            "validate.authnrequest": True,
            "validate.logout": True,
            "NameIDFormat": "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
            "signature.algorithm": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        }
        (metadata / "saml20-idp-hosted.php").write_text(
            f"<?php\n$metadata['__DYNAMIC:1__'] = {_php(idp)};\n"
        )
        self._write_sp_metadata()

    def _write_sp_metadata(self) -> None:
        metadata = self.root / "metadata"
        metadata.mkdir(parents=True, exist_ok=True)
        lines = ["<?php"]
        for sp in self.sps:
            entry = {
                "AssertionConsumerService": [
                    {
                        "index": 0,
                        "Binding": "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST",
                        "Location": sp.acs_url,
                    }
                ],
                "SingleLogoutService": [
                    {
                        "Binding": "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect",
                        "Location": sp.slo_url,
                    }
                ],
                "certData": cert_body(sp.cert_pem),
                "NameIDFormat": "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
                "validate.authnrequest": True,
                "validate.logout": True,
                "saml20.sign.assertion": True,
                "sign.logout": True,
                "assertion.encryption": sp.encrypt,
                "attributes.NameFormat": "urn:oasis:names:tc:SAML:2.0:attrname-format:basic",
                "signature.algorithm": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            }
            lines.append(
                f"$metadata[{_php(sp.entity_id)}] = array_merge({_php(entry)}, ['authproc' =>"
                " [10 => ['class' => 'saml:AttributeNameID', 'attribute' => 'uid',"
                " 'Format' => 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent']]]);"
            )
        partial = metadata / "saml20-sp-remote.php.new"
        partial.write_text("\n".join(lines) + "\n")
        partial.replace(metadata / "saml20-sp-remote.php")  # atomic: never read half-written

    def start(self) -> SimpleSamlIdp:
        self._write()
        env = {**os.environ, "SIMPLESAMLPHP_CONFIG_DIR": str(self.root / "config")}
        with self.log.open("wb") as out:
            self._process = subprocess.Popen(
                # No opcache: it would serve metadata files rewritten by `register`
                # stale for up to two seconds.
                [PHP, "-d", "opcache.enable=0", "-S", f"127.0.0.1:{self.port}", "-t", str(WWW)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.root,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"SimpleSAMLphp exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.base}/saml2/idp/metadata.php", timeout=5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"SimpleSAMLphp did not answer within {START_TIMEOUT:.0f} s: "
                    + self.log.read_text()[-2000:]
                )
            time.sleep(0.1)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=30)
        self._process = None

    def __enter__(self) -> SimpleSamlIdp:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def recent_log(self) -> str:
        """SimpleSAMLphp's own log, for assertion messages when a test fails."""
        path = self.root / "log" / "simplesamlphp.log"
        text = path.read_text() if path.exists() else ""
        return json.dumps(text[-3000:])


USERS = [
    IdpUser("ada", "ada@example.test", "Ada Lovelace", ["engineering", "secops"]),
    IdpUser("bob", "bob@example.test", "Bob Builder", []),
]


@pytest.fixture(scope="session")
def saml_idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleSamlIdp]:
    """One SimpleSAMLphp IdP for the whole run (start-up bounded by START_TIMEOUT);
    tests register their own service providers with it. Fails under CI when the
    packages are missing (`make saml` installs them), skips elsewhere."""
    from tests.conftest import in_ci

    reason = available()
    if reason is not None:
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    with SimpleSamlIdp(tmp_path_factory.mktemp("simplesamlphp"), USERS) as idp:
        yield idp


def form_fields(page: str) -> dict[str, str]:
    """The hidden inputs of an HTML form (SimpleSAMLphp's POST-binding pages)."""
    found = re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page)
    return {name: html.unescape(value) for name, value in found}


def form_action(page: str) -> str:
    match = re.search(r'<form[^>]*action="([^"]+)"', page)
    assert match, page[:2000]
    return html.unescape(match.group(1))


def sign_in_at_idp(
    browser: httpx.Client, url: str, *, user: str = "ada", password: str = PASSWORD
) -> httpx.Response:
    """Follow `url` to the IdP and, when it asks, enter the credentials; the page that
    carries the SAMLResponse form back to the SP (not yet posted)."""
    page = browser.get(url, follow_redirects=True)
    if "SAMLResponse" not in page.text:
        assert 'name="AuthState"' in page.text, page.text[:2000]
        fields = form_fields(page.text)
        page = browser.post(
            str(page.url).split("?")[0],
            data={"username": user, "password": password, "AuthState": fields["AuthState"]},
            follow_redirects=True,
        )
    assert "SAMLResponse" in page.text, page.text[:3000]
    return page
