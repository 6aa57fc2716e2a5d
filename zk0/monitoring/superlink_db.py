"""Enrolled and online nodes, read from the SuperLink's SQLite database without touching it.

The database is opened read-only (`mode=ro`; in the server stack the volume is mounted
read-only too) with a short busy timeout, so a scrape can neither change the SuperLink's state
nor hold a lock it waits on. The SuperLink keeps it in WAL mode: readers do not block its
writes, and SQLite (>= 3.22) reads a WAL database read-only while the SuperLink has it open. A
stopped SuperLink leaves no WAL files, and then the read-only open fails: `db_up` 0.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

# Flower 1.42's node status values (flwr.supercore.constant.NodeStatus).
STATUS_UNREGISTERED = "unregistered"
STATUS_ONLINE = "online"


class SuperLinkDBError(RuntimeError):
    """The database could not be read; the message names the file and what went wrong."""


@dataclass(frozen=True)
class NodeCounts:
    enrolled: int  # registered keys: status registered, online or offline
    online: int  # status online and within its heartbeat deadline


def read_node_counts(db_path: Path, now: float | None = None, timeout_s: float = 0.5) -> NodeCounts:
    """How many nodes are enrolled and how many are online right now.

    Matches Flower 1.42's link state (flwr/supercore/state/schema/linkstate_models.py, table
    `node`; flwr/server/superlink/linkstate/sql_linkstate.py). A node is enrolled while its
    status is not `unregistered`. It is online when its status is `online` AND `online_until`
    (last heartbeat + 2 x heartbeat interval) is still ahead: the SuperLink marks expired
    nodes `offline` only lazily, when it next looks at them, so the status alone can be stale.
    """
    now = time.time() if now is None else now
    path = Path(db_path).absolute()
    sql = """
        SELECT
            COALESCE(SUM(CASE WHEN status != :unregistered THEN 1 ELSE 0 END), 0),
            COALESCE(SUM(CASE WHEN status = :online AND online_until > :now THEN 1 ELSE 0 END), 0)
        FROM node
    """
    params = {"unregistered": STATUS_UNREGISTERED, "online": STATUS_ONLINE, "now": now}
    try:
        with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=timeout_s)) as db:
            db.execute("PRAGMA query_only = ON")
            enrolled, online = db.execute(sql, params).fetchone()
    except sqlite3.Error as err:
        raise SuperLinkDBError(
            f"cannot read the SuperLink database {path} ({err}): check --superlink-db names the SuperLink's "
            "--database file, that this process may read it and its directory, and that the SuperLink is running"
        ) from None
    return NodeCounts(enrolled=int(enrolled), online=int(online))
