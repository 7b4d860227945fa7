"""The audio format every speech path shares: 16 kHz mono, as data2vec's and wav2vec 2.0's models expect.

A module of its own, free of torch, so the data stages' decode workers start without importing it
(torch takes ~2.5 s and ~300 MB per spawned process).
"""

SPEECH_SAMPLE_RATE = 16_000
