"""Generation-based prediction during training (do_predict) and its BLEU / ROUGE metrics."""
