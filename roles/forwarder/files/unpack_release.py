# Copyright: overlay.flannel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unpack a forwarder release on the host, byte-compile it, and move it in place (the forwarder role's
install_release.yml runs it with the host's python3, which the release runs with).

    unpack_release.py STAGING ARCHIVE NAME RELEASES_DIR

ARCHIVE (copied into STAGING) holds the directory NAME; it is unpacked in
STAGING (anything left there by an interrupted run is removed first),
compiled for RELEASES_DIR/NAME (where it will be read from), renamed to
RELEASES_DIR/NAME in one step, and STAGING is removed. A failure leaves
RELEASES_DIR as it was. Prints one JSON object: release.
"""

import compileall
import json
import os
import re
import shutil
import subprocess
import sys


def main(argv):
    staging, archive, name, releases = argv
    tree = os.path.join(staging, name)
    dest = os.path.join(releases, name)
    shutil.rmtree(tree, ignore_errors=True)
    # tar: several times faster than Python's tarfile on the thousands of files of numpy and grpc; the files
    # belong to root, whoever packed them on the controller.
    subprocess.run(["tar", "-xzf", archive, "-C", staging, "--no-same-owner", name], check=True)
    if not compileall.compile_dir(os.path.join(tree, "lib"), quiet=1, rx=re.compile(r"/tests?/"),
                                  ddir=os.path.join(dest, "lib"), workers=0):
        sys.stderr.write("byte-compiling %s failed\n" % tree)
        return 1
    if not os.path.exists(dest):
        os.rename(tree, dest)
    shutil.rmtree(staging, ignore_errors=True)
    print(json.dumps(dict(release=dest)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
