"""Pascal VOC for det-sdk: the ``voc`` dataset, the ``voc`` metric and VOC recipes."""
