"""Shared pytest configuration: Hypothesis profiles and common fixtures."""

import os

import pytest
from hypothesis import HealthCheck, settings
from warmup import compile_kernels

# No deadline: a first call may compile kernels (tens of seconds on a cold cache), and a
# loaded machine is slow; a per-example time limit would fail for reasons unrelated to the
# code under test.
settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "thorough",
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def warm_kernels():
    """Compile once per session (or load from the on-disk cache) every kernel, as
    ``fgebm compile`` does, so that the tests' subprocesses find them in the shared cache
    (see warmup.py). Use it in every test or fixture that starts a subprocess, with
    SUBPROCESS_TIMEOUT."""
    compile_kernels()
