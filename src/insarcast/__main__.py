"""``python -m insarcast``: the command line, also the entry point for ``torchrun -m insarcast``."""

from insarcast.cli import main

main()
