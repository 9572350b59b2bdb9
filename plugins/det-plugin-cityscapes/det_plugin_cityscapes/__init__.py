"""Cityscapes for det-sdk: the ``cityscapes`` dataset and metric, recipes, and ``sdk cityscapes convert``."""
