"""The built-in corpus: movie-review-like sentences whose sentiment is in the word order.

Each example is one of two kinds (label 0 = negative, 1 = positive):

* a clause, "the plot was not very good": its sentiment is the adjective's,
  flipped by a negator ("not", "never", "hardly"); an intensifier ("very",
  "truly", ...) changes nothing;
* a contrast, "the plot was dull , but the acting was superb": the two clauses
  have opposite sentiments and the one after "but" decides.

Long stretches of neutral filler ("in the second half as far as i could tell")
sit at the start, between subject and verb, before "but" and at the end.

Why a bag of words falls short: negation is drawn with probability
``negation_prob`` (0.5 by default) whatever the label, so every adjective and
negator is as frequent in positive as in negative examples, and the clause's
label is the XOR of the two, which no linear function of counts gets more than
3 in 4 right. A contrast's two clauses come from the same distribution with
opposite sentiments, so swapping them gives the same bag of words with the
other label: a bag-of-words model is at chance on them. With half contrasts the
best linear bag-of-words classifier is at most 0.5 * 0.75 + 0.5 * 0.5 = 62.5 %
accurate, while a model that reads the order can be exact.
"""

from __future__ import annotations

import random

CLASS_NAMES = ["negative", "positive"]

SUBJECTS = [
    "the plot", "the acting", "the film", "the script", "the dialogue", "the soundtrack", "the cast",
    "the ending", "the direction", "the story", "the camera work", "the pacing", "the lead", "the villain",
]
VERBS = ["was", "is", "felt", "seemed"]
NEGATORS = ["not", "never", "hardly"]
INTENSIFIERS = ["very", "truly", "extremely", "really", "incredibly"]
POSITIVE = [
    "good", "great", "superb", "brilliant", "wonderful", "excellent",
    "charming", "moving", "gripping", "delightful", "clever", "beautiful",
]
NEGATIVE = [
    "bad", "dull", "boring", "awful", "terrible", "weak",
    "clumsy", "tedious", "bland", "painful", "forgettable", "messy",
]
FILLER = [
    "in the second half", "as far as i could tell", "from what i remember", "for most of the running time",
    "according to my sister", "on a rainy sunday afternoon", "after the opening credits",
    "during the middle section", "at the cinema downtown", "with a bucket of popcorn",
    "on the small screen at home", "in the version i saw", "if i recall correctly", "for a film of this kind",
    "compared with the book", "by the time the credits rolled", "in the original language",
    "on my second viewing", "with my whole family", "after a day at work", "in the scenes set at sea",
    "between the two trips to the city", "when the music starts", "now that i think about it",
]
CONTRAST = "but"


def corpus_vocabulary() -> list[str]:
    """Every word the generator can write, sorted (no special tokens)."""
    phrases = SUBJECTS + VERBS + NEGATORS + INTENSIFIERS + POSITIVE + NEGATIVE + FILLER + [CONTRAST, ",", "."]
    return sorted({word for phrase in phrases for word in phrase.split()})


def max_example_length(max_filler: int) -> int:
    """The most words an example can have, for a given ``max_filler``."""
    clause = 2 + 1 + 1 + 1 + 1  # two-word subject, verb, negator, intensifier, adjective
    # filler , <subject , filler , rest> , filler , but <subject , filler , rest> , filler .
    return 2 * clause + 5 * max_filler + 2 * 2 + 1 + 1 + 2 + 1 + 1


class _Writer:
    """Draws the parts of one example from a shared ``random.Random``."""

    def __init__(self, rng: random.Random, min_filler: int, max_filler: int,
                 negation_prob: float, intensifier_prob: float) -> None:
        self.rng = rng
        self.min_filler, self.max_filler = min_filler, max_filler
        self.negation_prob, self.intensifier_prob = negation_prob, intensifier_prob

    def filler(self) -> list[str]:
        """A stretch of neutral words, ``min_filler`` to ``max_filler`` long."""
        count = self.rng.randint(self.min_filler, self.max_filler)
        words: list[str] = []
        while len(words) < count:
            words += self.rng.choice(FILLER).split()
        return words[:count]

    def clause(self, subject: str, positive: bool) -> list[str]:
        """'<subject> [, filler ,] <verb> [negator] [intensifier] <adjective>' with the given sentiment."""
        negated = self.rng.random() < self.negation_prob
        adjectives = POSITIVE if positive != negated else NEGATIVE
        words = subject.split()
        stretch = self.filler()
        if stretch:
            words += [","] + stretch + [","]
        words.append(self.rng.choice(VERBS))
        if negated:
            words.append(self.rng.choice(NEGATORS))
        if self.rng.random() < self.intensifier_prob:
            words.append(self.rng.choice(INTENSIFIERS))
        words.append(self.rng.choice(adjectives))
        return words

    def around(self, words: list[str], before: bool) -> list[str]:
        """``words`` with a filler stretch and a comma before (or after) them."""
        stretch = self.filler()
        if not stretch:
            return words
        return stretch + [","] + words if before else words + [","] + stretch


def generate_corpus(
    num_examples: int,
    seed: int = 0,
    min_filler: int = 2,
    max_filler: int = 8,
    negation_prob: float = 0.5,
    contrast_prob: float = 0.5,
    intensifier_prob: float = 0.3,
) -> tuple[list[str], list[int]]:
    """Generates ``num_examples`` labeled sentences, the same ones for the same arguments.

    Labels come in pairs (one negative, one positive, in random order), so every
    even-length prefix is balanced and a prefix does not depend on ``num_examples``.

    Args:
        num_examples: how many sentences.
        seed: the seed of the ``random.Random`` that draws everything.
        min_filler: the fewest neutral words in each filler stretch.
        max_filler: the most neutral words in each filler stretch (longer is harder).
        negation_prob: how often a clause is negated (0.5 hides sentiment best from a bag of words).
        contrast_prob: how often an example is a "... but ..." contrast (harder for a bag of words).
        intensifier_prob: how often an adjective gets an intensifier.

    Returns:
        ``(texts, labels)``, labels 0 = negative, 1 = positive.
    """
    for name, value in (("num_examples", num_examples), ("min_filler", min_filler), ("max_filler", max_filler)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    if max_filler < min_filler:
        raise ValueError(f"max_filler must be >= min_filler, got min_filler={min_filler}, max_filler={max_filler}")
    for name, value in (("negation_prob", negation_prob), ("contrast_prob", contrast_prob),
                        ("intensifier_prob", intensifier_prob)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a probability between 0 and 1, got {value!r}")
    rng = random.Random(seed)
    writer = _Writer(rng, min_filler, max_filler, negation_prob, intensifier_prob)
    texts, labels = [], []
    first_label = 0
    for index in range(num_examples):
        if index % 2 == 0:
            first_label = rng.randrange(2)
        label = first_label if index % 2 == 0 else 1 - first_label
        if rng.random() < contrast_prob:
            first_subject, second_subject = rng.sample(SUBJECTS, 2)
            first = writer.clause(first_subject, positive=not label)
            first = writer.around(writer.around(first, before=True), before=False)
            second = writer.around(writer.clause(second_subject, positive=bool(label)), before=False)
            words = first + [",", CONTRAST] + second
        else:
            words = writer.around(writer.around(writer.clause(rng.choice(SUBJECTS), bool(label)), True), False)
        texts.append(" ".join(words + ["."]))
        labels.append(label)
    return texts, labels
