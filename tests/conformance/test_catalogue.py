"""The campaign's generated tests (conformance.campaign.tests), collected with the test suite."""

from conformance.campaign.tests import CASES, test_invalid_call, test_op

__all__ = ["CASES", "test_invalid_call", "test_op"]
