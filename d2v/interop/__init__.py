"""Interoperability: d2v checkpoints <-> Hugging Face transformers model directories.

- `export`: a d2v checkpoint's student encoder -> a transformers Data2Vec{Vision,Audio,Text}Model
  directory (exact counterparts only; `compat` says what blocks the others) or d2v's own
  weights-only format (safetensors + the spec as JSON).
- `import_`: a transformers Data2Vec model directory -> a d2v checkpoint that evaluation and
  pretraining load through `model.<modality>.init_from`.

transformers is an optional dependency (the `hf` extra): it is imported inside functions only.
"""
