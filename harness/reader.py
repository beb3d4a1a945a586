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
    """The adapter behind a tuned reader's served name, if a registered scenario ships it: gemma-3-270m-<scenario>
    (that scenario's reader), or any other name a shipped reader's finetune.json gives (gemma-3-270m-reader, the
    reader of several scenarios)."""
    from harness.endpoints.embedded import EMBEDDED_MODEL
    from harness.finetune.merge import read_provenance

    if not name or not name.startswith(EMBEDDED_MODEL + "-"):
        return None
    for folder in shipped_readers():
        try:
            if read_provenance(folder)["served_name"] == name:
                return folder
        except HarnessError:
            continue
    return None


def trained_for(info: dict[str, Any], scen) -> bool:
    """Was this tuned reader trained on the scenario's own prompt and answer form (the instructions and
    schema these scenario parameters ask)? A reader of several scenarios lists each (`trained_on`)."""
    from harness.finetune.data import prompt_form

    form = prompt_form(scen)
    forms = {t.get("prompt_form") for t in info.get("trained_on") or []}
    if not forms:  # a single-scenario reader made before `trained_on` was recorded
        return info.get("scenario") == scen.name and info.get("prompt_form") in (None, form)
    return form in forms


SKILLS = {
    "answer": "extraction",
    "route": "self-route's decision on retrieved chunks",
    "agent": "the agent's action protocol",
}


def skills(info: dict[str, Any], scen) -> set[str]:
    """What a tuned reader learned on this scenario (Strategy.reader_skill): extraction, and, where one of its
    training parts on the scenario holds them, agent trajectories ("agent") and the answerable decision on
    retrieved chunks ("route"); read from the training settings its finetune.json keeps."""
    config = info.get("config") or {}
    parts = [config.get("data") or {}] + [m.get("data") or {} for m in config.get("mix") or []]
    out = {"answer"}
    for part in parts:
        if part.get("scenario", "bio-needle") != scen.name:
            continue
        if part.get("agent_share", 0) > 0:
            out.add("agent")
        if part.get("retrieved_answerable") and part.get("answerable_share", 0) > 0:
            out.add("route")
    return out


def shipped_readers() -> list[Path]:
    """Every adapter a registered scenario ships (one folder once: a multi-task reader serves several)."""
    out: list[Path] = []
    for name in registry.names("scenario"):
        try:
            folder = registry.get("scenario", name)().reader()
        except HarnessError:
            continue
        if folder is not None and folder.resolve() not in [f.resolve() for f in out]:
            out.append(folder)
    return out


def _own_reader(ec: EndpointConfig, scen, own: Path, needs: set[str]) -> Reader:
    """The scenario's shipped reader, unless the run's arms need a skill it lacks and another shipped reader
    trained on the scenario has every one (then that one answers every arm, so the arms still compare)."""
    from harness.finetune.merge import read_provenance

    info = read_provenance(own)
    if not trained_for(info, scen):
        return Reader(
            ec,
            None,
            note=f"{info['served_name']} was tuned on another prompt or answer form than "
            "these scenario parameters ask for: the base model answers",
        )
    missing = sorted(needs - skills(info, scen))
    if not missing:
        return Reader(ec.model_copy(update={"adapter": str(own)}), info)
    lacks = " and ".join(SKILLS[s] for s in missing)
    for folder in shipped_readers():
        other = read_provenance(folder)
        if folder.resolve() != own.resolve() and trained_for(other, scen) and not needs - skills(other, scen):
            return Reader(
                ec.model_copy(update={"adapter": str(folder)}),
                other,
                note=f"{scen.name}'s own reader ({info['served_name']}) was not trained on {lacks}; "
                f"{other['served_name']}, which was, answers every arm of this run",
            )
    return Reader(
        ec.model_copy(update={"adapter": str(own)}),
        info,
        note=f"no shipped reader was trained on {lacks} for {scen.name}: those arms read as an untuned model "
        "would (harness finetune teaches them: docs/finetune.md)",
    )


def resolve_reader(ec: EndpointConfig, scen, needs: set[str] | frozenset[str] = frozenset()) -> Reader:
    """The embedded model tuned on this scenario when the scenario ships a reader and nothing else was
    asked for (no --endpoint, no --model) — or another shipped reader trained on it where the run's arms
    `needs` a skill (Strategy.reader_skill) that only the other learned; `--model gemma-3-270m` is the base, `--adapter DIR` any adapter.
    A tuned reader is asked zero-shot only on a scenario and form it was trained on; elsewhere it is
    treated as the base model (shown worked examples), with a note."""
    from harness.endpoints.embedded import EMBEDDED_MODEL
    from harness.finetune.merge import read_provenance

    if ec.adapter:
        if ec.url:
            raise UsageError(
                "--adapter is merged into a server the harness starts, not --endpoint "
                f"{ec.url}: serve it with `harness serve --adapter {ec.adapter}`"
            )
        if ec.model not in (None, "", EMBEDDED_MODEL):
            raise UsageError(f"--adapter tunes the embedded model, not --model {ec.model}")
        return _tuned(ec, read_provenance(ec.adapter), scen)
    shipped = shipped_reader(ec.model)
    if ec.url:
        return _tuned(ec, read_provenance(shipped), scen) if shipped else Reader(ec)
    if shipped is not None:
        return _tuned(ec.model_copy(update={"model": None, "adapter": str(shipped)}), read_provenance(shipped), scen)
    if ec.model is None and (own := scen.reader()) is not None:
        return _own_reader(ec, scen, own, set(needs))
    return Reader(ec)


def _tuned(ec: EndpointConfig, info: dict[str, Any], scen) -> Reader:
    """A tuned reader someone asked for by name or folder: zero-shot where it was trained, else as a base."""
    if trained_for(info, scen):
        return Reader(ec, info)
    return Reader(
        ec,
        None,
        note=f"{info['served_name']} was not trained on {scen.name} in this form: it is shown the base "
        "model's worked examples",
    )
