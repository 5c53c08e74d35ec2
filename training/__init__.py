"""Training, evaluation, metrics, dataset loaders and the ``pixeldrl`` command line."""
