import sys

from cavegpt.cli import main

sys.exit(main())
