"""python3 -m cluster.harness ... (with tests/ on sys.path): the cluster CLI."""
import sys

from .cluster import main

sys.exit(main())
