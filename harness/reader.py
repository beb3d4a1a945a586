"""Who answers a run, decided before any server starts: the scenario's tuned reader, the base
model or an adapter, and whether the grid's lengths can fit the window the server would get."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import registry
from harness.config import EndpointConfig
from harness.errors import HarnessError, UsageError


@dataclass
class Reader:
    """Who answers a run, as far as it is decided before any server starts: the endpoint settings to
    use (with the adapter filled in when the scenario's tuned reader is the default) and, for a tuned
    reader, its provenance (harness finetune's finetune.json). Recorded in config.yaml."""

    endpoint: EndpointConfig
    provenance: dict[str, Any] | None = None
    note: str | None = None

    @property
    def tuned(self) -> bool:
        return self.provenance is not None

    def default_shots(self) -> int:
        from harness.config import BASE_SHOTS

        return int(self.provenance.get("shots", 0)) if self.tuned else BASE_SHOTS

    def record(self, shots: int) -> dict[str, Any]:
        why = "the tuned reader was trained zero-shot" if self.tuned else "a base reader is shown worked examples"
        return {
            "tuned": self.tuned,
            "adapter": self.provenance,
            "shots": shots,
            "shots_default": self.default_shots(),
            "shots_reason": why,
        }


def shipped_reader(name: str | None) -> Path | None:
    """The adapter behind a tuned reader's served name (gemma-3-270m-<scenario>), if that scenario ships one."""
    from harness.endpoints.embedded import EMBEDDED_MODEL

    prefix = EMBEDDED_MODEL + "-"
    if not name or not name.startswith(prefix) or name[len(prefix) :] not in registry.names("scenario"):
        return None
    try:
        return registry.get("scenario", name[len(prefix) :])().reader()
    except HarnessError:
        return None


def resolve_reader(ec: EndpointConfig, scen) -> Reader:
    """The embedded model tuned on this scenario when the scenario ships a reader and nothing else was
    asked for (no --endpoint, no --model); `--model gemma-3-270m` is the base, `--adapter DIR` any adapter."""
    from harness.endpoints.embedded import EMBEDDED_MODEL
    from harness.finetune.data import prompt_form
    from harness.finetune.merge import read_provenance

    if ec.adapter:
        if ec.url:
            raise UsageError(
                "--adapter is merged into a server the harness starts, not --endpoint "
                f"{ec.url}: serve it with `harness serve --adapter {ec.adapter}`"
            )
        if ec.model not in (None, "", EMBEDDED_MODEL):
            raise UsageError(f"--adapter tunes the embedded model, not --model {ec.model}")
        return Reader(ec, read_provenance(ec.adapter))
    shipped = shipped_reader(ec.model)
    if ec.url:
        return Reader(ec, read_provenance(shipped) if shipped else None)
    if shipped is not None:
        return Reader(ec.model_copy(update={"model": None, "adapter": str(shipped)}), read_provenance(shipped))
    if ec.model is None and (own := scen.reader()) is not None:
        info = read_provenance(own)
        if info.get("prompt_form") not in (None, prompt_form(scen)):
            return Reader(
                ec,
                None,
                note=f"{info['served_name']} was tuned on another prompt or answer form than "
                "these scenario parameters ask for: the base model answers",
            )
        return Reader(ec.model_copy(update={"adapter": str(own)}), info)
    return Reader(ec)
