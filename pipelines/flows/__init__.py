"""Prefect flows that drive d2v's DVC stages; library code (`d2v/`) never imports Prefect.

    data       dvc repro of the data stages (per-stage tasks with retries)
    pretrain   dvc repro of one modality's pretrain stage (processes, rendezvous, warm start passed
               to `d2v pretrain` as environment variables), log streamed
    evaluate   dvc repro of the evaluate stages, one task per modality
    benchmark  data -> pretrain -> evaluate -> report -> publish (+ a Prefect markdown artifact)
    retrain    refresh data -> pretrain (optionally warm-started) -> evaluate -> compare with the
               champion -> promote if not worse -> publish with the decision

Every flow works on a repository checkout (`root`, default the working directory, which
prefect.yaml's `set_working_directory` pull step sets) and runs what dvc.yaml says: the command of a
stage is read from DVC, never written a second time here. Every stage runs through `dvc repro`,
so what `dvc status` says is up to date is skipped, as in a shell. Deployments: prefect.yaml.
"""
