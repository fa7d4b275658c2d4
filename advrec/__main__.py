"""``python -m advrec`` is the ``advrec`` command."""
import sys

from .cli import main

sys.exit(main())
