"""Measuring samples: metrics (FD, precision / recall, accuracy, diversity, saturated share), the feature
extractors they read (a classifier's penultimate layer, EfficientNet-Lite0), and the sample cache that makes sweeps
resumable. Used by the evaluation scripts in `training/`, the benchmarks and the Space."""
