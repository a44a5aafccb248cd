"""Model side: model loading (loader.py), finetuning types (adapters/), vocabulary changes (vocab.py).

The tokenizer is loaded by the data layer (data/tokenizer.py): data is tokenized before any weights load.
"""
