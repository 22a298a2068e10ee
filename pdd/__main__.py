import sys

from pdd.cli import main

sys.exit(main())
