"""Long bodies for the word diff's tests and bench/review_diff.py: pairs of (previous,
current) texts of BODY_CHARS characters (the default DOCUMENT_BODY_MAX_CHARS), ordinary and
repetitive, the same on every run."""
import random
import re

BODY_CHARS = 20_000
WORDS = ("the committee reviewed budget and approved plan for next year while members asked about "
         "costs of new roads bridges schools in north south east west districts before winter storms "
         "arrived early this season").split()


def ordinary_prose(seed, chars=BODY_CHARS):
    """Sentences of varied words with line breaks, cut to `chars` characters."""
    rng = random.Random(seed)
    sentences = []
    while sum(map(len, sentences)) < chars:
        words = rng.choices(WORDS, k=rng.randint(6, 18))
        sentences.append(" ".join(words).capitalize() + (".\n" if rng.random() < 0.2 else ". "))
    return "".join(sentences)[:chars]


def edited_prose(old, seed):
    """`old` with sentences replaced, deleted and inserted here and there, same length."""
    rng = random.Random(seed)
    sentences = re.findall(r"[^.]*\.\s*", old)
    for _ in range(12):
        sentences[rng.randrange(len(sentences))] = " ".join(rng.choices(WORDS, k=9)).capitalize() + ". "
    del sentences[rng.randrange(len(sentences))]
    sentences.insert(rng.randrange(len(sentences)), "An inserted sentence, quite new. ")
    return "".join(sentences).ljust(len(old), "!")[:len(old)]


def shuffled_words(seed, chars=BODY_CHARS):
    """Four short words in random order: long, repetitive and unlike any other draw."""
    rng = random.Random(seed)
    return "".join(rng.choice(("the ", "a ", "of ", "and ")) for _ in range(chars))[:chars]


# The same word 5,000 times, and the same with every hundredth word changed: the shape that
# made difflib compare every word with every other (minutes of CPU for one view).
REPEATED = "the " * 5000
REPEATED_EDITED = "".join("one " if number % 100 == 99 else "the " for number in range(5000))
PAIRS = {
    "ordinary prose": (ordinary_prose(1), edited_prose(ordinary_prose(1), 2)),
    "repeated word": (REPEATED, REPEATED_EDITED),
    "four words shuffled": (shuffled_words(3), shuffled_words(4)),
}
