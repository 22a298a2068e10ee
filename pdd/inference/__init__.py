"""Using a trained model outside its run: bundles (`pdd export`), readers for clinical formats and `Predictor`."""
