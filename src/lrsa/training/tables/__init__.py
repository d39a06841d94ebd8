"""The ablation tables: their plan (``plan``), their running (``run``) and their reports (``report``);
``lrsa.training.reproduce`` re-exports their public names."""
