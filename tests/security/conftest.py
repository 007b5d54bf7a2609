"""The attacker's suite: each test makes one attack on Berth and asserts that it fails,
and that the legitimate use beside it still works (docs/security.md maps each trust
boundary to its tests). The in-process fixtures are the governance tests' own."""

from tests.test_governance import PEOPLE, app, call, shared_ws, tokens  # noqa: F401
