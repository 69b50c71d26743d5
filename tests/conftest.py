import os

import torch

# The one place the suite sets its thread count (deliberately 1 unless SEQDIFF_THREADS says otherwise):
# it runs on 2 shared cores, where oversubscription slows these small models 20-40x.
torch.set_num_threads(int(os.environ.get("SEQDIFF_THREADS", "1")))
