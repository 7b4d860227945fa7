"""Thin entry points called by dvc.yaml: load a params slice, call one library function."""
