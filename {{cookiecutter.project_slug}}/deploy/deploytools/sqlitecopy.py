"""Copy a live SQLite database through SQLite's backup API, and check the copy.

    python3 sqlitecopy.py SOURCE TARGET   -> {"integrity": "ok"} on stdout

Run by deploy/backup as the service's account (the database's owner): the source is opened
read-only, its writers go on meanwhile, and the copy is one consistent state of it. Standard
library only; it imports nothing of the project.
"""

import json
import sqlite3
import sys


def main() -> int:
    source_path, target_path = sys.argv[1:3]
    source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True, timeout=30)
    target = sqlite3.connect(target_path)
    try:
        # One step (pages=-1): the copy is the database as one read transaction saw it.
        source.backup(target)
        integrity = target.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        target.close()
        source.close()
    print(json.dumps({"integrity": integrity}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
