"""``python -m crmkit``: the ``crmkit`` command line."""

from crmkit.cli import main

main()
