"""Orchestration: the DVC side of the pipeline (`pipelines.dvc_stages`) and Prefect flows (`pipelines.flows`)."""
