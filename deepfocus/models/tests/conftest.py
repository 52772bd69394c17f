import pytest
import torch


@pytest.fixture(autouse=True, scope="package")
def single_thread():
    """Run the tiny test networks on one thread: faster than several, and immune to the slowdown
    of OpenMP threads spinning when the CPUs are shared with other processes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
