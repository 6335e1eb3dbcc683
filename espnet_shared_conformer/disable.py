"""Remove the startup hook of :mod:`espnet_shared_conformer.enable`.

python -m espnet_shared_conformer.disable [--site-dir DIR]
"""

import sys

from espnet_shared_conformer.enable import main

if __name__ == "__main__":
    sys.exit(main(undo=True))
