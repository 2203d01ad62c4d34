"""``python -m sclinbench`` = the ``sclinbench`` command (see :mod:`sclinbench.cli`)."""
import sys

from sclinbench.cli import main

sys.exit(main())
