"""The campaign's generated tests (conformance.campaign), collected with the test suite."""

from conformance.campaign import CASES, test_invalid_call, test_op

__all__ = ["CASES", "test_invalid_call", "test_op"]
