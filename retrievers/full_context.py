"""`full-context`: stuff the whole corpus into the prompt; the long-context arm."""

from __future__ import annotations

from harness.plugin import OneShot, Sample, Shown, ShownPiece
from retrievers.chunking import SEPARATOR


class FullContext(OneShot):
    def show(self, sample: Sample) -> Shown:
        return Shown(
            context=sample.joined(SEPARATOR),
            pieces=[ShownPiece(id=d.id, doc_ids=[d.id], text=d.text) for d in sample.documents],
        )
