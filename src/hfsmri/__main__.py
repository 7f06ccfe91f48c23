"""``python -m hfsmri``: the same command line as the ``hfsmri`` entry point."""
import sys

from .cli import main

sys.exit(main())
