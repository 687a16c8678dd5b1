import sys

from mana_cli.main import main

sys.exit(main())
