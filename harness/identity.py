"""An identity provider on 127.0.0.1 for tests, the lab and the bench: signing keys made on
the spot (ES256, RS256), a key server that publishes them as a JWKS, and one way to mint a
learner's token in either of the service's modes (a shared HS256 secret, or a key the
JWKS publishes)."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from progress.auth import TokenRules, issue_token, token_claims

ISSUER = "http://127.0.0.1/test-identity-provider"


@dataclass
class SigningKey:
    """A private key the provider signs with, and its public half as a JWK."""

    alg: str
    kid: str
    private: Any

    @classmethod
    def make(cls, alg: str = "ES256", kid: str | None = None) -> SigningKey:
        if alg == "ES256":
            private: Any = ec.generate_private_key(ec.SECP256R1())
        elif alg == "RS256":
            private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            raise ValueError(f"no key maker for {alg}")
        return cls(alg, kid or f"{alg.lower()}-{uuid.uuid4().hex[:8]}", private)

    def public_jwk(self) -> dict[str, Any]:
        algorithm = jwt.get_algorithm_by_name(self.alg)
        jwk = algorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.private, algorithm=self.alg, headers={"kid": self.kid})


class KeyServer:
    """A JWKS on a free port of 127.0.0.1, served from a thread: `keys` is what it
    publishes (change it to rotate), `fetches` how often it was asked, `stop()` takes it
    down (connections refused) and `start()` brings it back on the same port."""

    def __init__(self, keys: list[SigningKey]) -> None:
        self.keys = list(keys)
        self.fetches = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/.well-known/jwks.json"

    def document(self) -> bytes:
        with self._lock:
            self.fetches += 1
            return json.dumps({"keys": [key.public_jwk() for key in self.keys]}).encode()

    def start(self) -> KeyServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = owner.document()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> KeyServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


@dataclass
class TokenMinter:
    """Learners' tokens in one of the service's modes: HS256 with `secret`, or signed with
    `key` (published by a KeyServer) for `issuer`. `settings()` is what the service needs
    to accept them."""

    secret: str = ""
    key: SigningKey | None = None
    server: KeyServer | None = None
    issuer: str = ISSUER
    rules: TokenRules = field(default_factory=TokenRules)

    def mint(
        self,
        user_id: uuid.UUID,
        email: str,
        *,
        email_verified: bool = True,
        admin: bool = False,
        ttl_s: int = 3600,
    ) -> str:
        if self.key is None:
            return issue_token(
                user_id,
                email,
                secret=self.secret,
                email_verified=email_verified,
                admin=admin,
                ttl_s=ttl_s,
                rules=self.rules,
            )
        claims = token_claims(
            user_id,
            email,
            rules=replace(self.rules, issuer=self.issuer),
            email_verified=email_verified,
            admin=admin,
            ttl_s=ttl_s,
        )
        return self.key.sign(claims)

    def sign(self, claims: dict[str, Any]) -> str:
        """Any claims, signed as this mode signs (with the issuer in JWKS mode)."""
        if self.key is None:
            return jwt.encode(claims, self.secret, algorithm="HS256")
        return self.key.sign({"iss": self.issuer, **claims})

    def settings(self) -> dict[str, str]:
        """The service's settings that accept these tokens (over a secret it already has)."""
        if self.server is None:
            return {"PROGRESS_JWT_SECRET": self.secret}
        return {"PROGRESS_JWT_JWKS_URL": self.server.url, "PROGRESS_JWT_ISSUER": self.issuer}


MODES = ("hs256", "jwks")


def start_minter(mode: str, secret: str) -> TokenMinter:
    """A minter for `mode`: `hs256` signs with `secret`; `jwks` starts a key server for
    this process (a daemon thread, until the process ends) publishing an ES256 and an
    RS256 key, and signs with the ES256 one."""
    if mode not in MODES:
        raise ValueError(f"token mode {mode!r} is not one of {MODES}")
    if mode == "hs256":
        return TokenMinter(secret=secret)
    keys = [SigningKey.make("ES256"), SigningKey.make("RS256")]
    return TokenMinter(secret=secret, key=keys[0], server=KeyServer(keys).start())
