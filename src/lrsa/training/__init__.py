"""Stage 5: training, evaluation and reproduction."""
