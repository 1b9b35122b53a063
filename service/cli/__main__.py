"""``python -m service.cli``: the same as the ``agentgw`` console script."""

import sys

from service.cli.app import main

sys.exit(main())
