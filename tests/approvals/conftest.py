from tests.runtime.conftest import _fast_retries, make_order, scripted, submit  # noqa: F401
from tests.web.conftest import awaiting, make_action, make_run  # noqa: F401
