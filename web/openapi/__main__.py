"""`python -m web.openapi`: the document as JSON on stdout."""

import json
import sys

from web.openapi import document

json.dump(document(), sys.stdout, indent=2)
sys.stdout.write("\n")
