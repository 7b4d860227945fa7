"""One front end per modality. Modalities never import each other; each registers a builder of its
front end in d2v/models/build.py."""
