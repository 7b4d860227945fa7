"""Paper-scale run profiles (`profiles/*.yaml`): find and check them, apply them to params.yaml, cost them."""
