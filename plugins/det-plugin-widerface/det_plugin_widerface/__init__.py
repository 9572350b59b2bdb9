"""WIDER FACE for det-sdk: the ``widerface`` dataset, the ``widerface`` metric and a RetinaNet recipe."""
