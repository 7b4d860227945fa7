"""`python -m d2v.train <modality> [...]` = `d2v pretrain <modality> [...]` (what torchrun launches:
`torchrun --nproc_per_node=N -m d2v.train image`)."""

import sys

from d2v.cli import main

sys.exit(main(["pretrain", *sys.argv[1:]]))
