"""python-tuf's ngclient as an independent oracle for a repository `slate publish` wrote.

Usage: fetch.py ROOT_JSON BASE_URL WORKDIR TARGET...
Trusts ROOT_JSON, refreshes the metadata from BASE_URL/metadata/, downloads each TARGET from
BASE_URL/targets/ (hash-prefixed, as consistent snapshots name them) into WORKDIR/targets,
and prints one line per target: "<name> <length> <sha256>". Any TUF failure raises.
"""

import hashlib
import os
import sys

from tuf.ngclient import Updater


def main() -> None:
    root, base, work, *names = sys.argv[1:]
    meta_dir = os.path.join(work, "metadata")
    target_dir = os.path.join(work, "targets")
    os.makedirs(meta_dir, exist_ok=True)
    os.makedirs(target_dir, exist_ok=True)
    with open(root, "rb") as f:
        trusted_root = f.read()
    updater = Updater(
        bootstrap=trusted_root,
        metadata_dir=meta_dir,
        metadata_base_url=f"{base}/metadata/",
        target_base_url=f"{base}/targets/",
        target_dir=target_dir,
    )
    updater.refresh()
    for name in names:
        info = updater.get_targetinfo(name)
        if info is None:
            raise SystemExit(f"{name}: not in the repository's targets")
        path = updater.download_target(info)
        with open(path, "rb") as f:
            data = f.read()
        print(name, len(data), hashlib.sha256(data).hexdigest())


if __name__ == "__main__":
    main()
