"""Word-level diffs for the review page, bounded in time.

The page compares a revision with the previous one (title, body of up to
DOCUMENT_BODY_MAX_CHARS, and their autodocs). An exact longest-common-subsequence diff of
words costs CPU that grows with the product of the two lengths when the text repeats
itself: difflib spent minutes of a request thread on 20,000 characters of one repeated
word. So the diff is diff-match-patch's Myers diff, which carries a deadline
(`Diff_Timeout`): each word (with the whitespace after it) is mapped to one character, the
way the library's line mode maps lines, the character strings are diffed, and the
characters are mapped back to words. Ordinary edits finish far inside the budget and come
out as small word-level changes; when the budget runs out, the part still being compared
comes out as one deletion and one insertion. Either way the result is a correct diff: its
equal and deleted parts rebuild the old text and its equal and inserted parts the new one.
"""
import re

from diff_match_patch import diff_match_patch

# Seconds of comparison per diff before the rest is shown as replaced: well inside the
# review page's 150 ms target (bench/review_diff.py), and ample for ordinary edits (a dozen
# sentences changed in 20,000 characters take 20-35 ms). A constant, not a setting: past it
# the diff is only coarser, never wrong, so no deployment has a reason to choose another.
BUDGET_SECONDS = 0.05

_WORDS = re.compile(r"\s+|\S+\s*")
_TAGS = {diff_match_patch.DIFF_EQUAL: "equal", diff_match_patch.DIFF_DELETE: "delete",
         diff_match_patch.DIFF_INSERT: "insert"}


def words(text):
    """`text` cut into the diff's units: each word with the whitespace after it, and any
    whitespace before the first word."""
    return _WORDS.findall(text or "")


def word_diff(old, new, budget=BUDGET_SECONDS):
    """The changes from `old` to `new`, word by word: a list of ("equal" | "delete" |
    "insert", text) whose equal and deleted parts rebuild `old` and whose equal and
    inserted parts rebuild `new`, found within `budget` seconds of comparison (past it,
    less minimal, never wrong). A word keeps the whitespace after it, so line breaks
    survive; Python's str works on code points and \\S keeps combining marks and emoji
    sequences inside their word."""
    vocabulary = [""]  # index 0 unused: no word becomes "\x00", as in the library's line mode
    codes = {}

    def encode(text):
        # One character per distinct word. Every word but a text's last takes two characters
        # or more and a body at most DOCUMENT_BODY_MAX_CHARS (<= 1,000,000), so two texts
        # have fewer distinct words than the 1,114,111 code points available.
        return "".join(chr(codes.setdefault(word, len(codes) + 1)) for word in words(text))

    a, b = encode(old), encode(new)
    vocabulary.extend(codes)
    matcher = diff_match_patch()
    matcher.Diff_Timeout = budget
    diffs = matcher.diff_main(a, b, checklines=False)
    matcher.diff_charsToLines(diffs, vocabulary)
    return [(_TAGS[operation], text) for operation, text in diffs]
