"""After an evaluation: where the errors are (numbers here, pictures in ``plots``).

- ``confusion``: MMDetection's confusion matrix with a background row and column;
  per-image false positives and negatives.
- ``pr_curves``: per-class precision-recall curves and AP from COCOeval's precision array.
- ``error_breakdown``: pycocotools' / Detectron's analysis (C75, C50, Loc, Sim, Oth, BG, FN).
- ``complexity``: parameters, FLOPs and multiply-adds of a model.
- ``report``: all of it for one evaluated ``coco`` metric, into a folder (``sdk analyze``, ``plots/``).
"""
