from tests.web.conftest import make_effect, make_run, make_span  # noqa: F401  (shared row makers)
