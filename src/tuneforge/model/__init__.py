"""Model side: tokenizer loading (tokenizer.py), model loading (loader.py), vocabulary changes (vocab.py)."""
