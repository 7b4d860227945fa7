"""Prefect flows that drive d2v's DVC stages; library code (`d2v/`) never imports Prefect.

    data       dvc repro of the data stages (per-stage tasks with retries)
    pretrain   torchrun of one modality's pretrain stage, log streamed, then `dvc commit`
    evaluate   the evaluate stages' commands run concurrently, then `dvc commit`
    benchmark  data -> pretrain -> evaluate -> report -> publish (+ a Prefect markdown artifact)
    retrain    refresh data -> pretrain (optionally warm-started) -> evaluate -> compare with the
               champion -> promote if not worse -> publish with the decision

Every flow works on a repository checkout (`root`, default the working directory, which
prefect.yaml's `set_working_directory` pull step sets) and runs what dvc.yaml says: the command of a
stage is read from DVC, never written a second time here. Deployments: prefect.yaml.
"""
