"""Production speaks ES2+ over mutual TLS: the stand-in, run here over HTTPS requiring a client
certificate signed by a CA the test makes, accepts our client with SMDP_CLIENT_CERT/KEY and
SMDP_CA_BUNDLE, and refuses a client without a certificate or with one from another CA."""

import datetime
import ipaddress
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from provisioning import es2plus

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.pure


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key, *, issuer=None, issuer_key=None, ca=False, server=False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    return builder.sign(issuer_key or key, hashes.SHA256())


def _write(path: Path, cert=None, key=None) -> str:
    data = b""
    if cert is not None:
        data += cert.public_bytes(serialization.Encoding.PEM)
    if key is not None:
        data += key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    path.write_bytes(data)
    return str(path)


@pytest.fixture
def pki(tmp_path):
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test CA", ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    client_key = ec.generate_private_key(ec.SECP256R1())
    stranger_ca_key = ec.generate_private_key(ec.SECP256R1())
    stranger_ca = _cert("other CA", stranger_ca_key, ca=True)
    stranger_key = ec.generate_private_key(ec.SECP256R1())
    return {
        "ca": _write(tmp_path / "ca.pem", ca),
        "server_cert": _write(
            tmp_path / "server.pem", _cert("127.0.0.1", server_key, issuer=ca, issuer_key=ca_key, server=True)
        ),
        "server_key": _write(tmp_path / "server.key", key=server_key),
        "client_cert": _write(tmp_path / "client.pem", _cert("esimsite", client_key, issuer=ca, issuer_key=ca_key)),
        "client_key": _write(tmp_path / "client.key", key=client_key),
        "stranger_cert": _write(
            tmp_path / "stranger.pem", _cert("nobody", stranger_key, issuer=stranger_ca, issuer_key=stranger_ca_key)
        ),
        "stranger_key": _write(tmp_path / "stranger.key", key=stranger_key),
    }


@pytest.fixture
def tls_smdp(pki):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "scripts/smdp_standin.py"),
            "--port",
            str(port),
            "--tls-cert",
            pki["server_cert"],
            "--tls-key",
            pki["server_key"],
            "--client-ca",
            pki["ca"],
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert "smdp stand-in on https" in process.stdout.readline()  # printed once it listens
        yield f"https://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_mutual_tls_accepts_our_certificate_and_refuses_others(tls_smdp, pki, settings):
    settings.SMDP_URL = tls_smdp
    settings.SMDP_CA_BUNDLE = pki["ca"]
    settings.SMDP_CLIENT_CERT = pki["client_cert"]
    settings.SMDP_CLIENT_KEY = pki["client_key"]
    settings.SMDP_TIMEOUT_SECONDS = 30
    assert es2plus.download_order(function_call_id="mtls-1", profile_type="default").startswith("8999")

    settings.SMDP_CLIENT_CERT = settings.SMDP_CLIENT_KEY = ""
    with pytest.raises(es2plus.TransientError) as refused:
        es2plus.download_order(function_call_id="mtls-2")
    assert "SSLError" in str(refused.value) or "ConnectionError" in str(refused.value)

    settings.SMDP_CLIENT_CERT, settings.SMDP_CLIENT_KEY = pki["stranger_cert"], pki["stranger_key"]
    with pytest.raises(es2plus.TransientError):
        es2plus.download_order(function_call_id="mtls-3")
