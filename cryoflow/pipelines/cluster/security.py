"""Mutual TLS for cryoflow clusters: a private CA, per-role certificates, ``distributed.Security``.

:func:`make_certificates` writes, into one folder::

    ca.pem                          the certificate authority (keep ca-key.pem offline)
    ca-key.pem
    scheduler.pem / scheduler-key.pem
    worker.pem    / worker-key.pem
    client.pem    / client-key.pem

Every certificate is signed by the CA and valid for ``localhost``/``127.0.0.1`` plus the
given host names. :func:`load_security` turns the folder into a ``distributed.Security`` with
``require_encryption=True``: every connection is ``tls://`` and both ends must present a
certificate signed by the CA (mutual authentication), so a plain or foreign client is refused.
Private keys are written with mode 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryoflow.errors import AlreadyExistsError, ConfigError

ROLES: tuple[str, ...] = ("scheduler", "worker", "client")
_FILES = ("ca.pem",) + tuple(f"{r}{s}" for r in ROLES for s in (".pem", "-key.pem"))


def _new_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: Any) -> None:
    from cryptography.hazmat.primitives import serialization

    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_cert(path: Path, cert: Any) -> None:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _san(hosts: Sequence[str]) -> Any:
    from cryptography import x509

    names: list[Any] = []
    for host in ("localhost", "127.0.0.1", *hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def make_certificates(
    directory: str | Path,
    *,
    hosts: Sequence[str] = (),
    days: int = 365,
    overwrite: bool = False,
) -> Path:
    """Write a CA and CA-signed scheduler/worker/client certificates into ``directory``.

    Parameters
    ----------
    directory : path
        Folder to create (or reuse when empty).
    hosts : sequence of str
        Extra host names or IP addresses the scheduler/workers are reached at.
    days : int
        Validity in days (>= 1).
    overwrite : bool
        Replace existing certificate files.

    Returns
    -------
    Path
        ``directory``.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if days < 1:
        raise ConfigError(f"certificate validity must be >= 1 day, got {days}")
    out = Path(directory)
    existing = [f for f in (*_FILES, "ca-key.pem") if (out / f).exists()]
    if existing and not overwrite:
        raise AlreadyExistsError(
            f"{out}: already holds {', '.join(existing)}; pass --overwrite to replace them"
        )
    out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    # 1. the certificate authority
    ca_key = _new_key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cryoflow CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(out / "ca-key.pem", ca_key)
    _write_cert(out / "ca.pem", ca_cert)
    # 2. one leaf per role, usable as TLS server and client (workers and the scheduler are both)
    usage = x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    for role in ROLES:
        key = _new_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"cryoflow {role}")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage, critical=False)
            .add_extension(_san(hosts), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write_key(out / f"{role}-key.pem", key)
        _write_cert(out / f"{role}.pem", cert)
    return out


def load_security(directory: str | Path, *, role: str = "client") -> Any:
    """A ``distributed.Security`` requiring mutual TLS, from a :func:`make_certificates` folder.

    Parameters
    ----------
    directory : path
        Folder holding ``ca.pem`` and the role certificates.
    role : {"client", "scheduler", "worker"}
        Which certificate the *client* side of this process presents. The scheduler and worker
        certificates are always set, so a ``LocalCluster`` started with this object works.
    """
    from distributed import Security

    if role not in ROLES:
        raise ConfigError(f"TLS role must be one of {', '.join(ROLES)}; got {role!r}")
    folder = Path(directory)
    missing = [f for f in _FILES if not (folder / f).is_file()]
    if missing:
        raise ConfigError(
            f"{folder}: TLS folder lacks {', '.join(missing)}; create it with `cryoflow certs {folder}`"
        )
    return Security(
        tls_ca_file=str(folder / "ca.pem"),
        tls_client_cert=str(folder / f"{role}.pem"),
        tls_client_key=str(folder / f"{role}-key.pem"),
        tls_scheduler_cert=str(folder / "scheduler.pem"),
        tls_scheduler_key=str(folder / "scheduler-key.pem"),
        tls_worker_cert=str(folder / "worker.pem"),
        tls_worker_key=str(folder / "worker-key.pem"),
        require_encryption=True,
    )
