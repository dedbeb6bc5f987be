"""``python -m airavata_magic.cli``."""
import sys

from . import main

sys.exit(main())
