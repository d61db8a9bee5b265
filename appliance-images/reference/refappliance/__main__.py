"""Entry point for `python3 refappliance` (a directory) as well as `python3 -m refappliance`."""

import sys
from pathlib import Path

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from refappliance.cli import main  # noqa: E402

sys.exit(main())
