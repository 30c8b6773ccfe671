"""pytest plugin loaded by run_s3tests.sh (`-p s3t_plugin`); not a test module.

- Per-phase timeout (setup / call / teardown) with SIGALRM, from S3T_TEST_TIMEOUT
  seconds (0 = none): a hanging request fails one test instead of the whole run.
- One line per finished test appended to S3T_RESULTS ("<outcome>\t<nodeid>"), written as
  the run goes so a run cut short by the overall timeout still leaves its results.
  outcome: passed | failed | error | skipped. A test whose call passed but whose
  teardown failed counts as error (not passed).
- S3T_ISOLATE=1: a fresh random bucket prefix before each test (template from
  S3T_BUCKET_PREFIX_TEMPLATE, default "s3t-{random}-"). s3-tests' autouse fixture deletes
  every bucket with the session's prefix before and after each test and fails the test
  when one cannot be deleted, so without this a single undeletable bucket fails every
  later test's setup.
"""
import os
import signal

import pytest

_TIMEOUT = int(os.environ.get("S3T_TEST_TIMEOUT", "0") or 0)
_RESULTS = os.environ.get("S3T_RESULTS")
_ISOLATE = os.environ.get("S3T_ISOLATE", "0") == "1"
_TEMPLATE = os.environ.get("S3T_BUCKET_PREFIX_TEMPLATE", "s3t-{random}-")
_state = {}


class S3TestTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise S3TestTimeout(f"test phase exceeded {_TIMEOUT}s (S3T_TEST_TIMEOUT)")


def _timed(phase):
    @pytest.hookimpl(hookwrapper=True)
    def hook(item, *args, **kwargs):
        if _TIMEOUT > 0:
            old = signal.signal(signal.SIGALRM, _alarm)
            signal.alarm(_TIMEOUT)
        try:
            yield
        finally:
            if _TIMEOUT > 0:
                signal.alarm(0)
                signal.signal(signal.SIGALRM, old)
    hook.__name__ = f"pytest_runtest_{phase}"
    return hook


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if not _ISOLATE:
        return
    import s3tests.functional as f
    if f.prefix is not None:  # None until the package fixture configured the session
        f.prefix = f.choose_bucket_prefix(template=_TEMPLATE)


class _Timers:
    pytest_runtest_setup = _timed("setup")


def pytest_configure(config):
    config.pluginmanager.register(_Timers(), "s3t_timers")


pytest_runtest_call = _timed("call")
pytest_runtest_teardown = _timed("teardown")


def pytest_runtest_logreport(report):
    st = _state.setdefault(report.nodeid, {})
    if report.when == "setup":
        if report.failed:
            st["outcome"] = "error"
        elif report.skipped:
            st["outcome"] = "skipped"
    elif report.when == "call":
        if report.skipped:
            st["outcome"] = "skipped"
        else:
            st["outcome"] = "passed" if report.passed else "failed"
    elif report.when == "teardown":
        if report.failed and st.get("outcome") in (None, "passed"):
            st["outcome"] = "error"


def pytest_runtest_logfinish(nodeid, location):
    st = _state.pop(nodeid, {})
    if _RESULTS:
        with open(_RESULTS, "a") as f:
            f.write(f"{st.get('outcome', 'error')}\t{nodeid}\n")
