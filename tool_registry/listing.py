"""Progress for list tools: the one rule for how a tool that returns many rows reads them and
tells its client how far it got.

A list tool reads through a `Listing`: its rows come from `ScopedStore.pages` (`PAGE_SIZE` rows
per query, the same rows in the same order as one `list` query), and after every page that
another page follows, the client hears `progress(done, total, "Listed 200 of up to 500
events")`. The total is the requested limit, known for free (counting the matching rows would
cost a second query on every call, with or without a progress token); `finish` then reports
the end with the real number as the total (`progress(250, 250, "Listed 250 events")`), so even
a short list reports once. Reports go through the call's `ClientChannel`, which sends nothing
unless the client asked for progress.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import aclosing

from tool_registry.client_channel import ClientChannel
from tool_registry.context import ToolContext
from tool_registry.store.records import Filter, Record, ScopedStore


class Listing:
    """One list tool call's reading: every `read` adds to the same count (a tool may read
    several queries in turn, e.g. the dated todos, then the undated), then `finish` once.
    Progress only increases: `finish` reports only when it adds to what was reported (a page
    announced as followed may come back empty when rows were deleted in between)."""

    def __init__(self, ctx: ToolContext, one: str, many: str, *, limit: int | None = None) -> None:
        """`one` and `many` name a row and rows in the messages ("event", "events");
        `limit` is the most rows the call asked for, the total while pages come in."""
        self._store: ScopedStore = ctx.store
        self._channel: ClientChannel = ctx.channel
        self._nouns = (one, many)
        self._limit = limit
        self._done = 0
        self._reported: int | None = None

    @property
    def done(self) -> int:
        """Rows read so far."""
        return self._done

    async def read(
        self,
        collection: str,
        *,
        filters: Sequence[Filter] = (),
        order_by: str = "created_at",
        descending: bool = False,
        limit: int | None = None,
    ) -> list[Record]:
        """The rows `ScopedStore.list` returns for these arguments, read in pages, with
        progress after every page that another follows."""
        records: list[Record] = []
        pages = self._store.pages(
            collection, filters=filters, order_by=order_by, descending=descending, limit=limit
        )
        # Closed at once when the call ends between pages (cancelled, or a report failed).
        async with aclosing(pages):
            async for page in pages:
                records.extend(page.records)
                self._done += len(page.records)
                if page.more:
                    await self._report(self._limit, self._so_far())
        return records

    def took(self, records: list[Record]) -> list[Record]:
        """Count rows the tool read in one query of its own (a ranked search)."""
        self._done += len(records)
        return records

    async def finish(self) -> None:
        """Report the end: everything read, out of exactly that many."""
        if self._reported is None or self._done > self._reported:
            await self._report(self._done, f"Listed {self._done} {self._noun(self._done)}")

    def _noun(self, count: int) -> str:
        return self._nouns[0] if count == 1 else self._nouns[1]

    def _so_far(self) -> str:
        if self._limit is None:
            return f"Listed {self._done} {self._noun(self._done)} so far"
        return f"Listed {self._done} of up to {self._limit} {self._noun(self._limit)}"

    async def _report(self, total: int | None, message: str) -> None:
        self._reported = self._done
        await self._channel.progress(self._done, total, message)
