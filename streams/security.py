"""Endpoint policy and CURVE set-up.

Defaults are safe: loopback tcp or ipc. Binding any other tcp address needs CURVE, or an
explicit `allow_insecure=True` from a user who knows the network is private.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from streams.errors import InsecureEndpointError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CurveServer:
    """The binding side: its own key pair and a directory of allowed clients' public keys."""

    secret_key_file: Path
    allowed_clients_dir: Path


@dataclass(frozen=True)
class CurveClient:
    """The connecting side: its own key pair and the server's public key."""

    secret_key_file: Path
    server_public_key_file: Path


Curve = CurveServer | CurveClient


def generate_keys(directory: Path, name: str) -> tuple[Path, Path]:
    """Write NAME.key (public) and NAME.key_secret in `directory`; return both paths.

    The secret key is readable by its owner only (0600), and a directory made here is
    private too (0700): a secret key others can read is no secret.
    """
    directory = Path(directory)
    if not directory.exists():
        directory.mkdir(parents=True)
        directory.chmod(0o700)
    public, secret = zmq.auth.create_certificates(str(directory), name)
    Path(secret).chmod(0o600)
    return Path(public), Path(secret)


def check_secret_key_file(path: Path) -> None:
    """Refuse a secret key that anyone but its owner can read or write."""
    mode = Path(path).stat().st_mode & 0o777
    if mode & 0o077:
        raise PermissionError(
            f"{path}: a secret key readable by others (mode {mode:o}); `chmod 600 {path}` "
            "and make a new key pair if others could have read it"
        )


def is_loopback(endpoint: str) -> bool:
    """True for ipc://, inproc:// and tcp:// on 127.0.0.0/8, ::1 or localhost."""
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        return False
    host = rest.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "*", an interface name or a host name
        return False


def check_bind(endpoint: str, curve: Curve | None, allow_insecure: bool) -> None:
    if is_loopback(endpoint) or allow_insecure:
        return
    if isinstance(curve, CurveServer):
        return
    raise InsecureEndpointError(
        f"refusing to bind {endpoint} without CURVE: it is reachable from other machines. "
        "Configure CURVE keys, bind 127.0.0.1/ipc://, or pass allow_insecure=True."
    )


def apply_curve(socket: zmq.Socket, curve: Curve) -> None:
    """Set CURVE options; must happen before bind/connect."""
    check_secret_key_file(curve.secret_key_file)
    public, secret = zmq.auth.load_certificate(str(curve.secret_key_file))
    if secret is None:
        raise ValueError(f"{curve.secret_key_file} holds no secret key")
    socket.curve_publickey = public
    socket.curve_secretkey = secret
    if isinstance(curve, CurveServer):
        socket.curve_server = True
    else:
        server_public, _ = zmq.auth.load_certificate(str(curve.server_public_key_file))
        socket.curve_serverkey = server_public


def start_authenticator(context: zmq.Context, curve: CurveServer) -> ThreadAuthenticator:
    """ZAP handler for `context` that admits only the clients whose keys are in the dir."""
    if not curve.allowed_clients_dir.is_dir():
        raise FileNotFoundError(f"allowed clients dir {curve.allowed_clients_dir} not found")
    auth = ThreadAuthenticator(context, log=log)
    auth.start()
    auth.configure_curve(domain="*", location=str(curve.allowed_clients_dir))
    return auth
