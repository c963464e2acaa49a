import os
import sys

sys.path.insert(0, os.path.dirname(__file__))


def pytest_configure(config):
    # Long attacks (hundreds of clients, hundreds of hostile payloads) run in their own
    # ctest entries, label "hostile" (`make hostile`), outside `make test`; CI runs both.
    config.addinivalue_line("markers", "hostile: a long attack, run by `make hostile`")
