import sys

from deffiller.cli import main

sys.exit(main())
