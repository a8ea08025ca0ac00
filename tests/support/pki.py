"""Certificates for TLS tests, made with the `openssl` command: a CA, a server certificate for 127.0.0.1, a client one.

The `cryptography` package is not among our pins; the OpenSSL command line that Python's own `ssl` is built
against is on every machine that runs the suite. EC P-256 keys: generated in milliseconds.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

OPENSSL_TIMEOUT_S = 30.0
VALID_DAYS = "2"
CURVE = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]


@dataclass(frozen=True, kw_only=True)
class Pki:
    """PEM files: `ca` signed `server_cert` (127.0.0.1, localhost) and `client_cert`; `other_ca` signed nothing."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path  # encrypted with `client_key_password`
    client_key_password: str
    other_ca: Path


def _openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    assert binary is not None, "the TLS tests need the openssl command (apt-get install openssl)"
    result = subprocess.run(
        [binary, *args], cwd=cwd, capture_output=True, text=True, timeout=OPENSSL_TIMEOUT_S, check=False
    )
    assert result.returncode == 0, f"openssl {' '.join(args[:2])} failed: {result.stderr}"


def _ca(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    _openssl(
        "req", "-x509", *CURVE, "-nodes", "-keyout", key.name, "-out", cert.name, "-days", VALID_DAYS,
        "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )  # fmt: skip
    return cert, key


def _leaf(folder: Path, name: str, ca: tuple[Path, Path], extensions: list[str], key_args: list[str]) -> Path:
    """A certificate for `name` signed by `ca`, its key in `<name>.key` (made with `key_args`)."""
    (folder / f"{name}.ext").write_text(
        "\n".join([*extensions, "subjectKeyIdentifier=hash", "authorityKeyIdentifier=keyid"])
    )
    _openssl(
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        *key_args,
        "-out",
        f"{name}.key",
        cwd=folder,
    )
    password = key_args[key_args.index("-pass") + 1] if "-pass" in key_args else None
    passin = ["-passin", password] if password else []
    _openssl("req", "-new", "-key", f"{name}.key", *passin, "-subj", f"/CN={name}", "-out", f"{name}.csr", cwd=folder)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial",
        "-out", f"{name}.pem", "-days", VALID_DAYS, "-extfile", f"{name}.ext",
        cwd=folder,
    )  # fmt: skip
    return folder / f"{name}.pem"


def make_pki(folder: Path, *, client_key_password: str = "client-key-secret") -> Pki:
    """A CA, the certificates it signed and another CA, written under `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = _ca(folder, "test-ca")
    other_ca, _ = _ca(folder, "other-ca")
    server_cert = _leaf(
        folder,
        "server",
        ca,
        ["subjectAltName=IP:127.0.0.1,DNS:localhost", "basicConstraints=CA:FALSE", "extendedKeyUsage=serverAuth"],
        [],
    )
    client_cert = _leaf(
        folder,
        "client",
        ca,
        ["basicConstraints=CA:FALSE", "extendedKeyUsage=clientAuth"],
        ["-aes-256-cbc", "-pass", f"pass:{client_key_password}"],
    )
    return Pki(
        ca=ca[0],
        server_cert=server_cert,
        server_key=folder / "server.key",
        client_cert=client_cert,
        client_key=folder / "client.key",
        client_key_password=client_key_password,
        other_ca=other_ca,
    )


def server_tls(pki: Pki, *, require_client_cert: bool = False) -> ssl.SSLContext:
    """A server TLS context with `pki`'s server certificate (and, if asked, requiring a client certificate)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki.ca)
    return context
