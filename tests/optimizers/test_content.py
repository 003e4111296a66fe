"""The no-task-content check: junk proposals rejected before evaluation, plain ones kept."""

from __future__ import annotations

import pytest

import promptopt.optimizers  # noqa: F401  (registers every method)
from promptopt.data import Splits
from promptopt.optimizers import OPRO
from promptopt.registry import tasks
from promptopt.search import SearchContext, content_problem, task_words
from promptopt.tasks import INSTRUCTION_POOL, ClassificationTask, CSVTask
from promptopt.testing import FakeSetup

PRAISE = ("Your new instruction is very effective and it will make a difference in every way "
          "possible.")
PLAIN = [
    "Rewrite the text as a formal business email",
    "Summarize the text.",
    "Please provide the prompt that was used to rewrite the text, in one sentence.",
    "Answer the question.",
    "Translate the sentence into French.",
    "Guess the prompt that turned the original text into the rewritten one.",
    "Make it a pirate shanty.",
    "Classify the review as positive or negative.",
    "You are an expert. From the question, give the correct answer.",
]
FRAME = OPRO().build_meta_prompt([], [])


def _task_instructions() -> list[tuple[frozenset[str], str]]:
    """Every registered task's start template and instruction pool, with its task words."""
    built = [FakeSetup(task=name).task for name in tasks.names() if name != "csv"]
    built += [CSVTask(Splits([], [], []), inputs=["question", "context"], target="answer"),
              CSVTask(Splits([], [], []), inputs=["prompt"], target="response")]
    assert any(isinstance(task, ClassificationTask) for task in built)
    out = []
    for task in built:
        words = task_words(task.default_instruction, [*task.input_fields, task.target_field])
        for text in (task.default_instruction, *task.instruction_pool):
            out.append((words, text))
    return out


def test_the_self_praising_answer_is_rejected():
    assert content_problem(PRAISE) == "praises itself"
    assert content_problem(PRAISE, frame=FRAME) == "praises itself"


@pytest.mark.parametrize("text", [
    "Certainly, I'd be happy to help you write a new instruction for the assistant. Please "
    "provide the details of the task.",
    "Sure! Here is an improved instruction: rewrite the text.",
    "Here is the new instruction for the assistant",
    "I'm sorry, I cannot see the original text.",
    "Could you please provide more details about the task?",
    # the 1.5B's answers that the quality benchmark of 2026-12-07 let through
    "Understood. Please provide the original text and the rewritten text.",
    "Please provide the original text and the rewritten text.",
    "Transform the given text into the revised text. Thank you for providing the prompts. I "
    "will follow the given instructions step-by-step to generate the final prompt.",
    "Thank you for following the instruction step-by-step. I will now randomly mutate the "
    "different parts of the given text.",
    "Please provide the original text and the rewritten text for me to generate the "
    "one-sentence instruction.",
    # and those of its evening run (EvoPrompt GA's crossover prompt)
    "I apologize, but I cannot generate a final prompt based on the provided prompts. Please "
    "provide the prompts you would like me to crossover and mutate.",
    "I understand your request. However, I don't have the original text or rewritten "
    "version provided in the prompts to crossover and generate a new prompt",
    "I apologize, but I can't create a final prompt based on the given prompts. Can you "
    "provide the prompts you'd like me to combine and transform?",
    # what evoprompt-ga seed 0 returned once its answers were read whole (e2b326c)
    "Thank you for the instruction. Let's proceed with the steps to generate the better "
    "prompt.",
])
def test_an_assistants_reply_to_the_asker_is_rejected(text):
    assert content_problem(text) == "replies to the asker"


@pytest.mark.parametrize("text", [
    "It should be concise, effective and generally applicable to all the examples above.",
    "Write a new instruction that is different from all the instructions above.",
])
def test_the_meta_prompts_own_words_are_rejected(text):
    assert content_problem(text, frame=FRAME) == "echoes the meta-prompt"


@pytest.mark.parametrize("text", ["Make it better.", "Be clear, concise and helpful.",
                                  "and", "It is what it is."])
def test_an_instruction_for_any_task_is_rejected(text):
    assert content_problem(text) == "fits any task"


@pytest.mark.parametrize("text", PLAIN)
def test_plain_instructions_are_kept(text):
    assert content_problem(text) is None
    assert content_problem(text, frame=FRAME) is None


def test_every_tasks_start_template_and_instruction_pool_is_kept():
    checked = _task_instructions()
    assert len(checked) > 20
    for words, text in checked:
        assert content_problem(text, frame=FRAME) is None, text
        assert content_problem(text, frame=FRAME, protected=words) is None, text
    for text in INSTRUCTION_POOL:
        assert content_problem(text) is None, text


def test_accept_counts_the_reason_and_never_evaluates():
    setup = FakeSetup(budget=50)
    ctx = SearchContext(task=setup.task, evaluator=setup.evaluator, proposer=setup.proposer,
                        start=setup.task.start_template(), seed=0)
    assert ctx.accept(PRAISE) is None
    assert ctx.accept("Be concise and effective.", frame=FRAME) is None
    kept = ctx.accept("Rewrite the text as a formal business email")
    assert kept is not None and kept.instruction.startswith("Rewrite the text")
    assert ctx.rejected == {"no task content (praises itself)": 1,
                            "no task content (echoes the meta-prompt)": 1}
    assert ctx.proposed == 3 and not setup.evaluator.history
