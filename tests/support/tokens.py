"""Which tokens the suite's apps accept and its learners carry: `TEST_TOKEN_MODE=hs256`
(the default: the tests' shared secret) or `jwks` (a key server in this process, as an
identity provider with asymmetric keys; docs/testing.md)."""

from __future__ import annotations

import os

from harness.identity import TokenMinter, start_minter

MODE = os.environ.get("TEST_TOKEN_MODE", "hs256")
_minters: dict[str, TokenMinter] = {}


def token_minter(secret: str) -> TokenMinter:
    """The session's minter for `secret` in the suite's mode (one key server per session)."""
    if secret not in _minters:
        _minters[secret] = start_minter(MODE, secret)
    return _minters[secret]
