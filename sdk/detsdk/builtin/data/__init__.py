"""Built-in datasets: COCO annotation files (``coco``) and synthetic shapes (``shapes``)."""
