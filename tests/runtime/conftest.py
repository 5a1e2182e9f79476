import pytest


@pytest.fixture(scope="session")
def cli(cli_in_process):
    """The CLI tests here read only exit codes and output: ``edgekit`` runs in process (a fresh Python per call
    cost seconds each)."""
    return cli_in_process
