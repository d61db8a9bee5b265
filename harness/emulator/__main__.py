import sys

from harness.emulator.daemon import main

sys.exit(main())
