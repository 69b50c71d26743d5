import os

import torch

# Deliberate thread count: the suite runs on 2 shared cores; oversubscription slows small models badly.
torch.set_num_threads(int(os.environ.get("SEQDIFF_THREADS", "1")))
