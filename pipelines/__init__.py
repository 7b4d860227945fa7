"""Orchestration: thin DVC stage entry points (`pipelines.stages`) and Prefect flows (`pipelines.flows`)."""
