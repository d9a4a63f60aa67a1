"""Entry point of `python -m kmnist_core`."""

import sys

from .cli import main

sys.exit(main())
