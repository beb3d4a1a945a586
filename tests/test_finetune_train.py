"""LoRA training on tiny data (the loss falls), resuming from a checkpoint, the saved adapter, and the merged
model folder with its provenance. The full training is a benchmark (bench/finetune.py), not a test."""

from __future__ import annotations

import json
import os

import pytest

from harness.endpoints.embedded import MODEL_DIRNAME, embedded_model_dir, prepare_embedded_model
from harness.errors import UsageError
from harness.finetune import train as trainer
from harness.finetune.config import DataConfig, FinetuneConfig
from harness.finetune.run import build_examples, provenance, save_adapter


@pytest.fixture(scope="module")
def base():
    return prepare_embedded_model()


def _config(tmp_path, **kw):
    data = DataConfig(lengths=[300, 400], length_range=False, answerable_share=0.0, seed=5)
    kw.setdefault("steps", 8)
    return FinetuneConfig(data=data, lr=2e-3, warmup=0, eval_n=0, rank=4, alpha=8, threads=2, out=tmp_path, **kw)


@pytest.fixture(scope="module")
def tiny(base, tmp_path_factory):
    """Eight steps over the same two examples: the model must learn them."""
    out = tmp_path_factory.mktemp("tiny")
    config = _config(out)
    two, _ = build_examples(config.model_copy(update={"steps": 2}), base)
    before = trainer.evaluate_loss(trainer.load_model(base, config), trainer.load_tokenizer(base), two, config.bf16)
    model, state = trainer.train(config, base, two * 4, out)
    after = trainer.evaluate_loss(model, trainer.load_tokenizer(base), two, config.bf16)
    return config, two, model, state, before, after, out


def test_loss_falls_on_tiny_data(tiny):
    _, _, _, state, before, after, _ = tiny
    assert state.step == 8 and len(state.losses) == 8
    assert after < 0.5 * before, (before, after)
    assert sum(state.losses[-2:]) < sum(state.losses[:2])


def test_only_the_answer_is_learned(tiny, base):
    """Logits come for the answer tokens only: their count is the answer's, not the prompt's."""
    import torch

    config, two, model, *_ = tiny
    tok = trainer.load_tokenizer(base)
    prompt, answer = trainer.encode(tok, two[0])
    assert prompt[0] == tok.bos_token_id and answer[-1] == tok.eos_token_id
    assert tok.decode(answer[:-1]) == two[0].target
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + answer[:-1]]), logits_to_keep=len(answer)).logits
    assert logits.shape[1] == len(answer)


def test_questions_packed_in_one_pass_get_the_loss_of_their_own_prompts(base, tmp_path):
    import torch

    config = FinetuneConfig(data=DataConfig(lengths=[500, 600], questions=3, answerable_share=0.0, seed=2), steps=1)
    examples, _ = build_examples(config, base)
    assert len(examples) >= 2 and len({e.group for e in examples}) == 1
    tok = trainer.load_tokenizer(base)
    model = trainer.load_model(base, config)
    encoded = [trainer.encode(tok, e) for e in examples]
    packed = trainer.pack(encoded)
    assert packed.shared > 400 and len(packed.ids) < sum(len(p) + len(a) for p, a in encoded) - packed.shared
    with torch.no_grad():
        alone = [float(trainer.answer_loss(model, p, a, True)) for p, a in encoded]
        together = float(trainer.packed_loss(model, packed, True))
    assert together == pytest.approx(sum(alone) / len(alone), abs=0.02)
    # a question that could see another's tokens would not match: the masks keep them apart
    masks = trainer.packed_masks(packed, model.get_base_model().config)
    seg = torch.tensor(packed.segment)
    full = masks["full_attention"][0, 0]
    assert not full[seg == 1][:, seg == 0].any() and full[seg == 1][:, seg == -1].all()


def test_boolean_decisions_are_weighted_in_the_answer_loss(base):
    """A boolean field is one token of ~40: its loss is weighted (FinetuneConfig.decision_weight) so the reader
    learns the field, not the prior. Only true/false tokens weigh more; weight 1 is the plain mean."""
    import torch

    tok = trainer.load_tokenizer(base)
    decisions = trainer.decision_ids(tok)
    assert {tok.decode([i]).strip() for i in decisions} == {"true", "false"}
    answer = tok('{"occupation":"rower","sportsperson":true,"politician":false}', add_special_tokens=False).input_ids
    at = [j for j, t in enumerate(answer) if t in decisions]
    assert len(at) == 2
    logits = torch.zeros(len(answer), len(tok))
    logits[torch.arange(len(answer)), torch.tensor(answer)] = 20.0  # every token right, confidently...
    logits[at[0], answer[at[0]]] = 0.0  # ...but the sportsperson decision: a coin flip over the vocabulary
    plain = float(trainer.answer_ce(logits, answer))
    assert float(trainer.answer_ce(logits, answer, decisions, 1.0)) == pytest.approx(plain)
    weighted = float(trainer.answer_ce(logits, answer, decisions, 10.0))
    assert weighted > 4 * plain  # the wrong decision now carries most of the loss
    assert FinetuneConfig(bf16=False).decision_weight == 10.0


def test_an_agent_steps_action_is_weighted_and_its_final_answer_is_not(base):
    """A trajectory's action steps (search / read / answer) weigh their action's token like a boolean: the choice
    to search again after a first read is one token of the step; the final extraction answer is left as it was."""
    import torch

    from harness.finetune.data import Example

    tok = trainer.load_tokenizer(base)

    def ex(target):
        return Example(
            split="train",
            group=0,
            form="agent",
            needle_shown=True,
            strategy="agentic",
            sample_id="s",
            seed=0,
            subject="A B",
            length=1,
            depth=0.0,
            context_tokens=1,
            prompt="p",
            messages=[],
            target=target,
            gold=None,
        )

    group = [
        ex('{"action":"search","input":"A B"}'),
        ex('{"action":"read","input":"n5"}'),
        ex('{"action":"search","input":"C D"}'),
        ex('{"action":"answer","input":""}'),
        ex('{"nationality":"kenyan","sportsperson":true}'),
    ]
    answers = [trainer.encode(tok, e)[1] for e in group]
    marks = trainer.action_indices(tok, group, answers)
    assert [tok.decode([a[m[0]]]) if m else None for a, m in zip(answers, marks)] == [
        "search",
        "read",
        "search",
        "answer",
        None,
    ]
    assert trainer.action_indices(tok, [e.model_copy(update={"form": "answer"}) for e in group], answers) == [()] * 5
    answer, (at,) = answers[2], marks[2]
    logits = torch.zeros(len(answer), len(tok))
    logits[torch.arange(len(answer)), torch.tensor(answer)] = 20.0
    logits[at, answer[at]] = 0.0  # the action itself a coin flip over the vocabulary
    plain = float(trainer.answer_ce(logits, answer))
    assert float(trainer.answer_ce(logits, answer, [], 10.0, marks[2])) > 4 * plain
    packed = trainer.pack([([1, 2, 3], a) for a in answers], marks)
    assert packed.weighted == marks


def test_a_judges_verdicts_are_weighted(base):
    """Each ragas verdict (the 0 / 1 after `"verdict":`) is one decision token, weighted like a boolean."""
    from harness.finetune.data import Example

    tok = trainer.load_tokenizer(base)
    target = (
        '{"statements":[{"statement":"A B is a politician.","reason":"r","verdict":1},'
        '{"statement":"A B\'s nationality is kenyan.","reason":"r","verdict":0}]}'
    )
    e = Example(
        split="train", group=0, form="judge", needle_shown=True, strategy="ragas-faithfulness", sample_id="s",
        seed=0, subject="A B", length=1, depth=0.0, context_tokens=1, prompt="p", messages=[], target=target,
        gold=None,
    )  # fmt: skip
    answer = trainer.encode(tok, e)[1]
    (marks,) = trainer.action_indices(tok, [e], [answer])
    assert [tok.decode([answer[i]]) for i in marks] == ["1", "0"]
    assert trainer.action_indices(tok, [e.model_copy(update={"form": "answer"})], [answer]) == [()]


def test_an_interrupted_run_resumes_from_its_checkpoint(base, tmp_path):
    config = _config(tmp_path, steps=3, checkpoint_every=1)
    examples, _ = build_examples(config, base, tmp_path)

    def stop_after_two(state, loss):
        if state.step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        trainer.train(config, base, examples, tmp_path, stop_after_two)
    saved = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert saved["step"] == 2
    _, state = trainer.train(config, base, examples, tmp_path)
    assert state.step == 3 and state.losses[:2] == saved["losses"] and len(state.losses) == 3
    other = config.model_copy(update={"lr": 1e-4})
    with pytest.raises(UsageError, match="another training run"):
        trainer.train(other, base, examples, tmp_path)


def test_merged_model_folder_and_its_provenance(tiny, base, tmp_path):
    import torch
    from safetensors import safe_open

    from harness.finetune.merge import merged_model_dir, prepare_merged_model, read_provenance

    config, two, model, state, *_ = tiny
    adapter = tmp_path / "adapter"
    info = provenance(config, "harness finetune --steps 8", "gemma-3-270m-tiny", "d" * 64, state, None, two, "f" * 16)
    save_adapter(model, adapter, info)
    sizes = {f.name: f.stat().st_size for f in adapter.iterdir()}
    assert set(sizes) >= {"adapter_config.json", "adapter_model.safetensors", "finetune.json"}
    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}

    cache = tmp_path / "cache"
    (cache / "models").mkdir(parents=True)
    os.symlink(embedded_model_dir(), cache / "models" / MODEL_DIRNAME)  # no second conversion of the GGUF
    folder = prepare_merged_model(adapter, cache)
    assert folder == merged_model_dir(adapter, cache) and folder.name.startswith("gemma-3-270m-tiny-")
    marker = json.loads((folder / ".harness-complete.json").read_text())
    saved = json.loads((folder / "finetune.json").read_text())
    assert marker["adapter_sha256"] == saved["adapter_sha256"] == read_provenance(adapter)["adapter_sha256"]
    for key in ("base", "scenario", "steps", "seed", "data_hash", "command"):
        assert saved[key] == info[key]
    assert saved["steps"] == 8 and saved["seed"] == 5 and saved["scenario"] == "bio-needle"
    mtime = (folder / "model.safetensors").stat().st_mtime
    assert prepare_merged_model(adapter, cache) == folder and (folder / "model.safetensors").stat().st_mtime == mtime

    # the merged weights answer like the adapter did: same answer loss, up to bfloat16 rounding
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.bfloat16)
    tok = trainer.load_tokenizer(base)
    got = trainer.evaluate_loss(merged, tok, two, True)
    want = trainer.evaluate_loss(model, tok, two, True)
    base_loss = trainer.evaluate_loss(
        AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.bfloat16), tok, two, True
    )
    assert abs(got - want) < 0.25 * (base_loss - want), (got, want, base_loss)


def test_not_an_adapter_is_a_one_line_error(tmp_path):
    from harness.finetune.merge import read_provenance

    with pytest.raises(UsageError, match="not an adapter from harness finetune") as e:
        read_provenance(tmp_path)
    assert "\n" not in str(e.value)
