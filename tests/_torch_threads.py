"""One torch thread for a test module's tests (import ``one_torch_thread`` into the module:
it is autouse there): on a shared 2-core machine, as in a Dask task, more threads only
contend."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
