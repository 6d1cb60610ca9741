"""D1–D5: the digits file, its splits and normalisation, training and evaluation batches."""
