"""Prompts: shared prefix first (instructions, shots), haystack, question last; both API forms."""

from harness.prompting import build_prompt
from harness.samples import Document
from harness.scenario import Shot


def test_prompt_orders_prefix_context_question():
    shot = Shot(
        documents=[Document(id="a", text="Ann Zeb is a french chef.")],
        question="Who is Ann Zeb?",
        answer={"nationality": "french"},
    )
    p = build_prompt("Extract facts.", [shot], "HAYSTACK TEXT", "What is known about Bo Quix?")
    t = p.text
    assert (
        t.index("Extract facts.") < t.index("Ann Zeb is a french chef.") < t.index("HAYSTACK TEXT") < t.index("Bo Quix")
    )
    assert t.rstrip().endswith("Answer:")
    assert '{"nationality":"french"}' in t  # compact, as the structured-output server writes it
    roles = [m["role"] for m in p.messages]
    assert roles == ["system", "user", "assistant", "user"]
    assert "HAYSTACK TEXT" in p.messages[-1]["content"] and "Bo Quix" in p.messages[-1]["content"]


def test_prompts_for_two_questions_share_everything_but_the_question():
    a = build_prompt("I", [], "CTX", "q1?").text
    b = build_prompt("I", [], "CTX", "q2?").text
    common = len(a) - len("q1?\nAnswer:")
    assert a[:common] == b[:common]


def test_shot_answers_are_written_in_the_models_answer_form():
    shot = Shot(
        documents=[Document(id="a", text="Ann Zeb, born 1950.")],
        question="Who is Ann Zeb?",
        answer={"date_of_birth": {"day": 0, "month": 0, "year": 1950}},
    )
    p = build_prompt("I", [shot], "C", "q?", encode=lambda a: {"born": str(a["date_of_birth"]["year"])})
    assert 'Answer: {"born":"1950"}' in p.text
    assert p.messages[2]["content"] == '{"born":"1950"}'
