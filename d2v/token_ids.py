"""The sentencepiece ids the tokenizer stage fixes and every text model relies on.

A module of its own, free of torch, so the tokenize stage starts without importing it (`import
torch` is 1.3-1.5 s on a fast 2-core machine and ~6 s on a slow one, per stage process).
"""

PAD_ID, UNK_ID, BOS_ID, EOS_ID, MASK_ID = 0, 1, 2, 3, 4
