"""Send messages to nodes and hand back each reply as soon as it arrives."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from flwr.app import Message


def stream_replies(grid, messages: Iterable[Message], timeout: float, poll_s: float = 0.5) -> Iterator[Message]:
    """Like `grid.send_and_receive`, but yields replies one by one (no list of N updates)
    and polls more often than its fixed 3 s, which shortens every round."""
    pending = set(grid.push_messages(messages))
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        arrived = False
        for reply in grid.pull_messages(list(pending)):
            pending.discard(reply.metadata.reply_to_message_id)
            arrived = True
            yield reply
        if pending and not arrived:
            time.sleep(poll_s)
