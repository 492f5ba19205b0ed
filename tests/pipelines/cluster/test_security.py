"""Secure by default: loopback binding, mutual TLS, and refusing plain clients."""

from __future__ import annotations

import os
import stat

import pytest

from cryoflow.errors import AlreadyExistsError, ConfigError
from cryoflow.pipelines.cluster.connect import ClusterConfig, connect
from cryoflow.pipelines.cluster.security import load_security, make_certificates


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("tls"))


def test_certificates_written_with_private_keys(certs):
    for name in ("ca.pem", "scheduler.pem", "worker.pem", "client.pem"):
        assert (certs / name).read_text().startswith("-----BEGIN CERTIFICATE-----")
    mode = stat.S_IMODE(os.stat(certs / "client-key.pem").st_mode)
    assert mode == 0o600


def test_certificates_are_signed_by_the_ca(certs):
    from cryptography import x509

    ca = x509.load_pem_x509_certificate((certs / "ca.pem").read_bytes())
    leaf = x509.load_pem_x509_certificate((certs / "worker.pem").read_bytes())
    leaf.verify_directly_issued_by(ca)
    other = make_certificates(certs.parent / "other")
    foreign = x509.load_pem_x509_certificate((other / "ca.pem").read_bytes())
    with pytest.raises(Exception):  # noqa: B017 - any verification failure will do
        leaf.verify_directly_issued_by(foreign)


def test_no_silent_overwrite(certs):
    with pytest.raises(AlreadyExistsError, match="--overwrite"):
        make_certificates(certs)


def test_missing_material_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cryoflow certs"):
        load_security(tmp_path)


def test_security_requires_encryption(certs):
    sec = load_security(certs)
    assert sec.require_encryption is True
    with pytest.raises(ConfigError, match="scheduler, worker, client"):
        load_security(certs, role="admin")


def _inc(x):
    return x + 1


@pytest.mark.fault  # the fault matrix (docs/design/fault-matrix.md)
def test_tls_cluster_accepts_cert_client_and_refuses_plain_client(certs, tmp_path):
    from distributed import Client

    cfg = ClusterConfig(
        n_workers=1, memory_limit="1GiB", security=load_security(certs), dashboard=False
    )
    with connect(cfg, quiet=True) as client:
        address = client.scheduler.address
        assert address.startswith("tls://127.0.0.1:")
        assert client.submit(_inc, 1).result() == 2
        # a client holding a certificate from the same CA works
        with Client(
            address, security=load_security(certs), timeout="10s", set_as_default=False
        ) as other:
            assert other.submit(_inc, 2).result() == 3
        # a plain (unencrypted) peer is refused by the scheduler
        _assert_refused(address.replace("tls://", "tcp://"), None)
        # and one without TLS material cannot even speak tls://
        with pytest.raises(TypeError, match="ssl_context"):
            Client(address, timeout="3s", set_as_default=False)
        # a peer with a certificate from a foreign CA is refused
        foreign = load_security(make_certificates(tmp_path / "foreign"))
        _assert_refused(address, foreign)


def _assert_refused(address, security):
    """Connecting and asking the scheduler for its identity must fail.

    Done at the comm level (one asyncio run in this thread) rather than with a full ``Client``,
    whose background IO-loop thread made refused attempts slow and flaky on a loaded machine.
    """
    import asyncio

    from distributed.comm import connect as comm_connect

    async def attempt():
        kwargs = security.get_connection_args("client") if security is not None else {}
        comm = await comm_connect(address, timeout="3s", **kwargs)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await asyncio.wait_for(comm.read(), 5)
        finally:
            await comm.close()

    with pytest.raises(OSError):
        asyncio.run(attempt())


@pytest.mark.fault  # the fault matrix (docs/design/fault-matrix.md)
def test_local_cluster_and_dashboard_bind_loopback():
    cfg = ClusterConfig(n_workers=1, memory_limit="1GiB", dashboard=True)
    with connect(cfg, quiet=True) as client:
        info = client.scheduler_info()
        assert client.scheduler.address.startswith("tcp://127.0.0.1:")
        for addr in info["workers"]:
            assert addr.startswith("tcp://127.0.0.1:")
        assert "127.0.0.1" in client.dashboard_link
