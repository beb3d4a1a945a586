"""The Scenario interface: a dataset of grid-cell samples plus the answer schema and field scorer.

A scenario knows nothing about strategies or endpoints. It builds samples for a grid
(context lengths x needle depths x needles per cell), says what the answer looks like
(a JSON schema the endpoint enforces), and marks an answer field by field.

What the statistics rely on (docs/adding-a-scenario.md walks through a whole scenario):
  * **Pairing.** Needle i of a length is the same item (the same fact, question and gold
    answer) at every depth, and every strategy is asked the same samples. The verdict compares
    per-needle differences and the intervals resample whole needles, so a scenario that drew a
    fresh needle per depth would compare depths on different questions and the tests would be
    wrong. Keep the background the same across depths too (only the needle moves), so depth is
    the only thing that changes; sharing it across the needles of a length also lets a server's
    prefix cache reuse it.
  * **Determinism.** The same seed and parameters give the same samples (ids included): a run is
    resumed, and compared with other runs, by sample id.
  * **The null baseline** is the accuracy of a know-nothing answer: `null_answer(population)`,
    by default each field's most common value, with `population = reference_labels()`. Draw
    that population from the same distribution the needles' gold answers come from (e.g. the
    haystack's labels), never from the few needles being scored (one needle would make chance
    level 100%). Return [] when no such population exists: the baseline then falls back to the
    scored golds themselves.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from harness.errors import UsageError
from harness.samples import Document, Sample

# Counts tokens of many texts at once, in the served model's own tokens.
TokenCounter = Callable[[Sequence[str]], list[int]]


class ScenarioParams(BaseModel):
    """Scenario-specific options (`--scenario-param key=value`); subclasses add fields."""

    model_config = ConfigDict(extra="forbid")


class Shot(BaseModel):
    """A worked example for few-shot prompting, drawn from a split disjoint from test samples."""

    documents: list[Document]
    question: str
    answer: dict[str, Any]


class Grounding(ABC):
    """Scenario-specific value matching for judge-free grounding (`harness.scoring.grounding`).

    The generic scorer splits what the model was shown into per-document segments and asks,
    for each predicted field value, which segments support it. A scenario says what
    "supported" means for its fields (surface forms of dates, demonyms, ...) and which values
    are not claims at all (abstentions such as "unknown"), which can be neither grounded nor
    hallucinated.
    """

    def is_claim(self, field: str, value: Any) -> bool:
        """False for an abstention (e.g. "unknown", a date of zeros): nothing to ground."""
        return value is not None

    @abstractmethod
    def supports(self, field: str, value: Any, text: str) -> bool:
        """Whether `text` (one document's shown text, or part of it) states `value` for `field`."""


class Words(BaseModel):
    """How the report speaks of a scenario's pieces ("distractor: only in another <document> that
    was shown"; "<subject> · gold"). The core never names a scenario's domain itself."""

    model_config = ConfigDict(frozen=True)

    document: str = "document"  # one piece of the corpus
    documents: str = "documents"
    subject: str = "subject"  # what a question is about (Sample.subject)
    searched: str = ""  # what an agent is told to search for; default "the <subject> the question names"

    def search_hint(self) -> str:
        return self.searched or f"the {self.subject} the question names"


class Scenario(ABC):
    """A task: samples of a grid, the answer's schema, its scorer, shots and the null population.

    The scored form of an answer (what `score`, `fields`, `Sample.gold` and `Shot.answer` speak
    of) is a dict of fields. The form the model writes (`answer_schema`) may differ: when it is not
    an object (a string, a number, a list), the core wraps it as {"answer": ...} for the endpoint,
    and by default `decode_answer` puts the value under `answer_field` (the only field, unless
    set) and `encode_answer` takes it back out, so such a scenario writes neither. Gold may hold keys
    that are not fields: a working value the model writes before the fields it helps to decide
    (bio-needle's `occupation`, written before the two roles), encoded like the rest, never scored.
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type[ScenarioParams]] = ScenarioParams
    fields: ClassVar[list[str]] = []  # answer fields, in the order they are reported
    splits: ClassVar[tuple[str, ...]] = ("test",)  # "train" too when it can make fine-tuning data
    READER_DIR: ClassVar[str] = "reader"  # a tuned reader's adapter, beside the scenario's module
    answer_field: ClassVar[str | None] = None  # a non-object answer's key in the scored form (default: fields[0])
    words: ClassVar[Words] = Words()

    def __init__(self, params: ScenarioParams | None = None, seed: int = 0):
        self.params = params if params is not None else self.Params()
        self.seed = seed

    def check(self) -> None:  # noqa: B027 (an optional hook: nothing by default)
        """Validate the scenario's inputs (data files, parameters) before any server starts.

        Raise harness.errors.UsageError with a one-line reason; the default checks nothing."""

    def check_files(self, files: Sequence[Path]) -> tuple[list[str], str | None]:
        """`harness data check FILE... --scenario NAME`: what the files hold, as lines to print, and
        why a run could not use them (None: it could). Read everything, name every refused line or
        row; start no server. Default: the scenario reads no files."""
        raise UsageError(f"scenario {self.name} reads no data files (`harness data check` has nothing to check)")

    def input_notes(self) -> list[str]:
        """What `check()` did to the inputs that a user should know (labels normalised, with counts;
        entries left out). Printed as notes and saved in the run's config.yaml; default: none."""
        return []

    @property
    @abstractmethod
    def instructions(self) -> str:
        """The task statement put before the context."""

    @abstractmethod
    def answer_schema(self) -> dict[str, Any]:
        """A self-contained JSON schema (no $ref) for structured output: the form the model writes.

        It may be more compact than the scored form (fewer tokens to decode): `decode_answer` turns
        a schema-valid answer into the form `score` and `fields` speak of, `encode_answer` does the
        reverse for shots and fine-tuning targets.
        """

    def encode_answer(self, answer: dict[str, Any]) -> Any:
        """A gold answer (scored form) as the model should write it. Default: unchanged, or, when
        the schema is not an object, the value under `answer_field`."""
        if self._bare_answer():
            return answer[self._answer_key()]
        return answer

    def decode_answer(self, written: Any) -> dict[str, Any]:
        """A schema-valid answer as the model wrote it, in the scored form. Default: unchanged, or,
        when the schema is not an object, {answer_field: written}."""
        if self._bare_answer():
            return {self._answer_key(): written}
        return written

    def _bare_answer(self) -> bool:
        return self.answer_schema().get("type") != "object"

    def _answer_key(self) -> str:
        if self.answer_field:
            return self.answer_field
        if len(self.fields) != 1:
            raise TypeError(
                f"{type(self).__name__}: a non-object answer_schema needs answer_field "
                "(or exactly one field), or its own encode_answer/decode_answer"
            )
        return self.fields[0]

    @abstractmethod
    def samples(
        self, lengths: Sequence[int], depths: Sequence[float], needles: int, count_tokens: TokenCounter
    ) -> list[Sample]:
        """Build every sample of the grid. Raise harness.errors.UsageError for an impossible grid.

        One sample per (length, depth, needle index). Lengths are in the served model's tokens:
        `count_tokens` counts a batch of texts at once (a round trip to the endpoint: count each
        distinct text once, in few batches; `harness.haystack` does that). Needle i must be the
        same item at every depth of a length (the pairing, see the module docstring); `gold_ids`
        name the documents that hold the answer (retrieval arms report their recall of them).
        """

    @abstractmethod
    def shots(self, n: int) -> list[Shot]:
        """`n` few-shot examples, disjoint from every test sample."""

    @abstractmethod
    def score(self, answer: dict[str, Any], gold: dict[str, Any]) -> dict[str, bool | float]:
        """Mark each field of a (schema-valid, decoded) answer against the gold answer: True/False,
        or a fraction in [0, 1] for a set-valued answer (harness.scoring.answers.set_precision_recall).
        A query's score is the mean of its marks."""

    def split(self, name: str, seed: int | None = None) -> Scenario:
        """This scenario drawing its samples from split `name`: "test" (what compare asks about) or
        "train" (fine-tuning data: `harness finetune`, `harness data export-finetune`), whose
        documents no test sample of any seed may hold. `seed` draws another sample of the split (a
        fresh haystack per training example). Only scenarios that list "train" in `splits` have one.

        Default: a scenario whose parameters have a `split` field ("test" or "train") and that lists the
        split in `splits` is rebuilt with that field set (and the seed); its samples ask `training`."""
        if name == "test" and seed is None:
            return self
        if name in self.splits and "split" in type(self.params).model_fields:
            return type(self)(self.params.model_copy(update={"split": name}), self.seed if seed is None else seed)
        raise UsageError(
            f"scenario {self.name} has no {name!r} split (it has: {', '.join(self.splits)}); "
            "fine-tuning needs a scenario with a training split"
        )

    @property
    def training(self) -> bool:
        """Does this scenario draw the training split (its parameters' `split` is "train")?"""
        return getattr(self.params, "split", "test") == "train"

    def questions(self, sample: Sample) -> list[Sample]:
        """Every question the sample's documents answer, each as a sample sharing its documents (the sample
        itself first). Fine-tuning asks several of one context in a single forward pass; the default
        knows only the sample's own question."""
        return [sample]

    def search_terms(self, sample: Sample) -> list[str]:
        """The words that find this sample's gold documents when an agent searches for them (its subject, in
        the scenario's own terms: a name, a key, a criterion). A search holding any of them, case-insensitive,
        counts as having searched the subject (the agents' report). Default: the sample's subject."""
        return [sample.subject] if sample.subject else []

    def hops(self, sample: Sample) -> list[str]:
        """What an agent searches, in turn, to reach the gold documents one after another: one search a gold
        document (`gold_ids` in order), each read in the document the hop before found (a multi-hop
        question: the coach's name in the athlete's biography). Agent trajectories in fine-tuning
        demonstrate these. Default: one hop, the subject."""
        return [sample.subject] if sample.subject else []

    def reader(self) -> Path | None:
        """A LoRA adapter of the embedded model tuned on this scenario and shipped with it (the folder
        `harness finetune` writes), or None. Default: a `reader/` folder beside the scenario's module."""
        import importlib

        module = importlib.import_module(type(self).__module__)
        folder = Path(module.__file__).parent / self.READER_DIR if getattr(module, "__file__", None) else None
        return folder if folder is not None and (folder / "adapter_config.json").is_file() else None

    def answer_tokens(self, length: int) -> int:
        """The answer token limit a context of `length` tokens needs at least (0: the endpoint's default
        serves). A scenario whose answer grows with the context (an entry per document) says so here:
        compare raises the limit to it unless --max-tokens was given."""
        return 0

    def reference_labels(self) -> list[dict[str, Any]]:
        """Gold answers (scored form) of the population the needles are drawn from (e.g. the
        haystack's documents, or questions drawn like the needles' but never asked).

        The null baseline is `null_answer(reference_labels())`, marked against every scored
        gold: each field's most common value here rather than among the few needles being
        scored, which would make chance level look like 100% for one needle. A scenario may say
        where it came from in words as a `null_source` attribute (shown beside the baseline).
        """
        return []

    def grounding(self) -> Grounding | None:
        """Judge-free grounding rules, or None when the scenario has none.

        Default: a `grounding` module beside the scenario's module (scenarios/<name>/grounding.py)
        that defines `make_grounding(scenario) -> Grounding`. Override to supply one directly.
        """
        import importlib

        package = type(self).__module__.rpartition(".")[0]
        if not package:
            return None
        name = package + ".grounding"
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name in (name, package):
                return None
            raise
        factory = getattr(module, "make_grounding", None)
        return factory(self) if factory is not None else None

    def null_answer(self, golds: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The answer a know-nothing model would give: the most common value of each field in `golds`
        (override when the scored form is not one value per field, e.g. a list scored by set
        precision and recall)."""
        import json
        from collections import Counter

        out: dict[str, Any] = {}
        for f in self.fields:
            counts = Counter(json.dumps(g[f], sort_keys=True) for g in golds)
            out[f] = json.loads(counts.most_common(1)[0][0]) if counts else None
        return out
