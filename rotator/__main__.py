"""``python -m rotator``: the same entry point as the ``rotator`` console script."""

from rotator.cli import main

main()
