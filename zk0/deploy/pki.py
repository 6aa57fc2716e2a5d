"""The federation's PKI: a CA, the SuperLink's TLS certificate, per-node auth key pairs.

Files written here are the contract for Flower 1.42:

- ``ca.pem`` / ``ca.key``: self-signed CA (ECDSA P-384). ``ca.pem`` is what SuperNodes get as
  ``--root-certificates`` and the admin's flwr connection as ``root-certificates``.
- ``superlink.pem`` / ``superlink.key``: the SuperLink's TLS server certificate signed by the
  CA (``--ssl-certfile`` / ``--ssl-keyfile``). Its SANs always include ``127.0.0.1`` and
  ``localhost`` because the SuperLink's own SuperExec connects to 127.0.0.1, and ``superlink``
  (the Compose service name a proxy in the server stack reaches and verifies). It lives
  ``LEAF_DAYS`` (90) and is re-issued (same key) once it expires within ``RENEW_DAYS`` (30),
  as the superlink role does.
- ``supernode.key`` / ``supernode.pub``: a node's ECDSA P-384 auth key pair in OpenSSH
  format, the format ``flower-supernode --auth-supernode-private-key`` loads
  (``load_ssh_private_key``) and ``flwr supernode register`` loads (``load_ssh_public_key``);
  identical to what ``ssh-keygen -t ecdsa -b 384 -N ""`` writes.

Private keys are created with mode 0600 from the first byte (never world-readable), written
to a temporary file in the target directory and renamed into place. An existing valid key is
kept (idempotent, and said in ``notes``); one that others could read is tightened to 0600 and
reported in ``warnings`` (it may have leaked). An existing unreadable or wrong-type key is an
error, never overwritten; so is a target that is not a writable directory.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import os
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
SUPERLINK_CERT = "superlink.pem"
SUPERLINK_KEY = "superlink.key"
NODE_KEY = "supernode.key"
NODE_PUB = "supernode.pub"

ALWAYS_SANS = ("127.0.0.1", "localhost", "superlink")
CA_DAYS = 3650
LEAF_DAYS = 90  # superlink_cert_days
RENEW_DAYS = 30  # superlink_cert_renew_days


class PKIError(RuntimeError):
    """A PKI file is missing, invalid or would be overwritten."""


@dataclass(frozen=True)
class Report:
    """What a command did besides writing files: kept keys (notes) and exposed ones (warnings)."""

    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CAFiles:
    cert: Path
    key: Path
    report: Report = field(default_factory=Report, compare=False)


@dataclass(frozen=True)
class ServerCertFiles:
    cert: Path
    key: Path
    ca_cert: Path
    report: Report = field(default_factory=Report, compare=False)


@dataclass(frozen=True)
class NodeKeyFiles:
    private_key: Path
    public_key: Path
    report: Report = field(default_factory=Report, compare=False)


def _prepare_dir(directory: Path) -> None:
    """`directory` exists (created if missing) and this user can write files into it."""
    if directory.exists() and not directory.is_dir():
        raise PKIError(f"{directory} is a file, not a directory: give a directory for the PKI files (it is created)")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except NotADirectoryError as err:
        raise PKIError(
            f"cannot create directory {directory}: a part of its path is a file: give a directory for the PKI files"
        ) from err
    except OSError as err:
        raise PKIError(
            f"cannot create directory {directory} ({err.strerror}): give a directory you can write to"
        ) from err
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PKIError(
            f"directory {directory} is not writable by this user: give one you can write to, or fix its permissions"
        )


def _os_errors[**P, R](fn: Callable[P, R]) -> Callable[P, R]:
    """An OSError while reading or writing PKI files becomes a PKIError naming the file."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except OSError as err:
            raise PKIError(
                f"cannot use {err.filename or 'a PKI file'} ({err.strerror or err}): check that it is a file "
                "this user can read and that its directory is writable"
            ) from err

    return wrapper


# ---------------------------------------------------------------- atomic file writing


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` with ``mode`` set before any byte is written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)  # mkstemp already creates 0600; make the final mode explicit
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_private_key(path: Path, key: ec.EllipticCurvePrivateKey, fmt: str) -> None:
    if fmt == "openssh":
        data = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    else:
        data = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    _write_atomic(path, data, 0o600)


def _load_ec_private_key(path: Path, fmt: str, report: Report | None = None) -> ec.EllipticCurvePrivateKey:
    if not path.is_file():
        raise PKIError(f"{path} exists but is not a file: move it away and run the command again")
    raw = path.read_bytes()
    key: PrivateKeyTypes
    try:
        if fmt == "openssh":
            key = serialization.load_ssh_private_key(raw, password=None)
        else:
            key = serialization.load_pem_private_key(raw, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        kind = "an OpenSSH private key (ssh-keygen -t ecdsa -b 384)" if fmt == "openssh" else "a PEM private key"
        raise PKIError(
            f"{path} exists but is not {kind} without a passphrase ({err}). "
            "It was not overwritten: move it away and run the command again to make a new one."
        ) from err
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp384r1":
        raise PKIError(
            f"{path} exists but is not an ECDSA P-384 key. It was not overwritten: "
            "move it away and run the command again to make a new one."
        )
    _tighten_mode(path, report if report is not None else Report())
    return key


def _same_key(a: PublicKeyTypes, b: PublicKeyTypes) -> bool:
    """Whether two public keys are one (any algorithm: a certificate may hold a non-EC key)."""
    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return a.public_bytes(der, spki) == b.public_bytes(der, spki)


def _tighten_mode(path: Path, report: Report) -> None:
    """Existing private keys must not be readable by others: fix loose modes in place, and say so."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        path.chmod(0o600)
        report.warnings.append(
            f"{path} was readable by others (mode {mode:04o}): tightened to 0600; consider it exposed and make a "
            "new one (move it away and run this command again)"
        )


def _load_or_create_key(path: Path, fmt: str, report: Report) -> tuple[ec.EllipticCurvePrivateKey, bool]:
    """Return (key, created)."""
    if path.exists() or path.is_symlink():
        key = _load_ec_private_key(path, fmt, report)
        report.notes.append(f"kept the existing key {path}")
        return key, False
    key = ec.generate_private_key(ec.SECP384R1())
    _write_private_key(path, key, fmt)
    return key, True


# ---------------------------------------------------------------- CA


@_os_errors
def create_ca(directory: Path, common_name: str = "zk0 federation CA") -> CAFiles:
    """Create (or keep) the federation CA in ``directory``."""
    directory = Path(directory)
    _prepare_dir(directory)
    files = CAFiles(cert=directory / CA_CERT, key=directory / CA_KEY)
    if files.cert.exists() and not files.key.exists():
        raise PKIError(
            f"{files.cert} exists without its key {files.key}. Restore the key, or move the "
            "certificate away to make a new CA (every node then needs the new ca.pem)."
        )
    key, created = _load_or_create_key(files.key, "pem", files.report)
    if files.cert.exists() and not created:
        cert = load_cert(files.cert)
        if not _same_key(cert.public_key(), key.public_key()):
            raise PKIError(f"{files.cert} does not belong to {files.key}. Move both away to make a new CA.")
        return files
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA384())
    )
    _write_atomic(files.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return files


def load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(Path(path).read_bytes())
    except (ValueError, OSError) as err:
        raise PKIError(
            f"{path} is not a readable PEM certificate ({err}): "
            "restore the right file, or move it away to make a new one."
        ) from err


# ---------------------------------------------------------------- SuperLink certificate


def _san_entries(sans: list[str]) -> list[x509.GeneralName]:
    entries: list[x509.GeneralName] = []
    seen: set[str] = set()
    for raw in [*sans, *ALWAYS_SANS]:
        value = raw.strip()
        if not value or value in seen:
            continue
        seen.add(value)
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(value)))
        except ValueError:
            entries.append(x509.DNSName(value))
    return entries


def cert_sans(cert: x509.Certificate) -> set[str]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(v) for v in ext.get_values_for_type(x509.IPAddress)} | set(ext.get_values_for_type(x509.DNSName))


@_os_errors
def create_superlink_cert(
    directory: Path, sans: list[str], ca_dir: Path | None = None, days: int = LEAF_DAYS, renew_days: int = RENEW_DAYS
) -> ServerCertFiles:
    """Create the SuperLink TLS certificate signed by the CA in ``ca_dir`` (default: same dir).

    Kept as is when it exists, is signed by this CA, already covers every requested SAN and
    is still valid ``renew_days`` from now; re-issued (same key, ``days`` long) otherwise, so
    adding a DNS name or renewing is one command.
    """
    if not 0 <= renew_days < days:
        raise PKIError(f"renew_days ({renew_days}) must be less than days ({days}).")
    directory = Path(directory)
    ca_dir = Path(ca_dir) if ca_dir else directory
    ca_cert_path, ca_key_path = ca_dir / CA_CERT, ca_dir / CA_KEY
    if not ca_cert_path.exists() or not ca_key_path.exists():
        raise PKIError(f"No CA in {ca_dir}: run `zk0 pki ca --dir {ca_dir}` first.")
    _prepare_dir(directory)
    files = ServerCertFiles(cert=directory / SUPERLINK_CERT, key=directory / SUPERLINK_KEY, ca_cert=ca_cert_path)
    ca_cert = load_cert(ca_cert_path)
    ca_key = _load_ec_private_key(ca_key_path, "pem", files.report)
    key, created = _load_or_create_key(files.key, "pem", files.report)
    wanted = _san_entries(sans)
    now = dt.datetime.now(dt.UTC)
    if files.cert.exists() and not created:
        cert = load_cert(files.cert)
        same_key = _same_key(cert.public_key(), key.public_key())
        if (
            same_key
            and cert.issuer == ca_cert.subject
            and {str(getattr(e, "value", e)) for e in wanted} <= cert_sans(cert)
            and cert.not_valid_after_utc > now + dt.timedelta(days=renew_days)
        ):
            return files
    cn = next((s for s in sans if s.strip()), "localhost")
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(wanted), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA384())
    )
    _write_atomic(files.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return files


# ---------------------------------------------------------------- node auth keys


def public_key_openssh(key: ec.EllipticCurvePrivateKey, comment: str = "") -> bytes:
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return line + (b" " + comment.encode() if comment else b"") + b"\n"


@_os_errors
def create_node_key(directory: Path, comment: str = "zk0-supernode") -> NodeKeyFiles:
    """Create (or keep) a SuperNode auth key pair; the public key is (re)derived from it."""
    directory = Path(directory)
    _prepare_dir(directory)
    files = NodeKeyFiles(private_key=directory / NODE_KEY, public_key=directory / NODE_PUB)
    key, _ = _load_or_create_key(files.private_key, "openssh", files.report)
    pub = public_key_openssh(key, comment)
    if not files.public_key.exists() or files.public_key.read_bytes().split()[:2] != pub.split()[:2]:
        _write_atomic(files.public_key, pub, 0o644)
    return files
