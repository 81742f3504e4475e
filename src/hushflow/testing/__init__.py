"""Test doubles shipped with hushflow, for its own tests and for code built on it.

`FakeApiServer` stands in for the few Kubernetes API endpoints hushflow uses (no API server can
run where the tests run); see `hushflow.testing.fake_apiserver`.
"""

from hushflow.testing.fake_apiserver import FakeApiServer, FakeResource, RecordedRequest

__all__ = ["FakeApiServer", "FakeResource", "RecordedRequest"]
