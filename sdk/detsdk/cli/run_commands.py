"""``sdk run``, ``sdk eval`` and ``sdk predict``."""

COMMANDS = []
