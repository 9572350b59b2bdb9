"""``python -m detsdk`` is the ``sdk`` command."""

from detsdk.cli import main

if __name__ == "__main__":
    main()
