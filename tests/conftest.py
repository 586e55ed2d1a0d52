"""Test-suite settings.

- Under CI (CI=true) hypothesis draws derandomized examples, so a submission's verdict does not depend on the luck
  of the draw; locally it explores fresh examples on every run.
- One torch thread per test process: the suite runs as 2 xdist workers on 2 cores, and two threads per worker
  oversubscribe the cores (measured: the LSTM optimiser's meta-training slowed about 15x).
"""

import os

import torch
from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

torch.set_num_threads(1)
