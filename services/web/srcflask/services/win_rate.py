"""How often a candidate model's draft reads better than the active model's, in the editors'
blind comparisons (services/comparisons.py), with how sure we can be of it.

A comparison scores the candidate 1 (its draft read better), 0 (the active model's did) or
½ ("about the same"). Ties count as half a win rather than being dropped: an editor who
finds the two drafts about the same says the candidate is no better and no worse, so ties
must pull the rate toward 0.5; dropped, ten ties and one win would read as a 100 % win rate.

The 95 % interval is Wilson's score interval on (wins + ties / 2) successes out of n
comparisons. Wilson rather than the textbook p ± z·√(p(1-p)/n): it stays inside [0, 1] and
keeps its coverage near 95 % for the small n and the rates near 0 or 1 a new candidate
has (the textbook interval gives [1, 1] for 5 wins out of 5). With ties a comparison's
score is not a coin toss: its variance is p(1-p) minus a quarter of the share of ties, so
the binomial interval used here is, if anything, wider than it needs to be — the
promotion gate errs on the side of the active model.

Each editor's choice on a pair counts as one comparison: the database keeps one per editor
and pair, so a choice posted twice counts once. Two editors choosing on the same pair (a
document reassigned between them) count twice: two people's judgements, though of the same
two texts, so they are not quite independent; documents have one editor at a time, so such
pairs are rare, and counting them once each is what "how many times did an editor prefer
it" means. Comparisons on archived documents are left out, as everywhere documents are
used (services/archive.py); a restore brings them back.
"""
import math
from dataclasses import asdict, dataclass

from sqlalchemy import case, func, select

from ..extensions import db
from ..models import Comparison, Retention
from ..static.data.processeddata.models import Revision

# The standard normal quantile for a two-sided 95 % interval.
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Tally:
    """A candidate's blind comparisons against one baseline model."""

    wins: int
    ties: int
    losses: int

    @property
    def comparisons(self):
        return self.wins + self.ties + self.losses

    @property
    def score(self):
        """Wins, with ties as half a win."""
        return self.wins + self.ties / 2

    @property
    def win_rate(self):
        """The score per comparison; None before any comparison."""
        return self.score / self.comparisons if self.comparisons else None

    @property
    def interval(self):
        """The Wilson 95 % interval of the win rate, (low, high)."""
        return wilson_interval(self.score, self.comparisons)

    def as_dict(self):
        low, high = self.interval
        return {"comparisons": self.comparisons, **asdict(self), "win_rate": self.win_rate, "low": low, "high": high}


def wilson_interval(successes, n, z=Z95):
    """Wilson's score interval (low, high) for `successes` out of `n` trials (successes may
    be fractional: ties count half). With no trials nothing is known: (0.0, 1.0)."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"{successes} successes out of {n} trials")
    p = successes / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half_width = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    # At p = 0 or 1 that end is exactly 0 or 1, which floating point misses by a hair.
    return (0.0 if successes == 0 else centre - half_width), (1.0 if successes == n else centre + half_width)


def tallies(baseline_id, candidate_ids):
    """{candidate id: Tally} of each of `candidate_ids` against `baseline_id` (a candidate
    never compared gets a Tally of zeros): one grouped query, whatever their number."""
    result = {candidate_id: Tally(0, 0, 0) for candidate_id in candidate_ids}
    if baseline_id is None or not result:
        return result
    rows = db.session.execute(
        select(Comparison.candidate_model_id,
               *(func.count(case((Comparison.winner == winner, 1))) for winner in ("candidate", "tie", "baseline")))
        .join(Revision, Revision.id == Comparison.revision_id)
        .join(Retention, Retention.document_id == Revision.document_id)
        .where(Comparison.baseline_model_id == baseline_id, Comparison.candidate_model_id.in_(list(result)),
               Retention.archived_at.is_(None))
        .group_by(Comparison.candidate_model_id)
    )
    for candidate_id, wins, ties, losses in rows:
        result[candidate_id] = Tally(wins, ties, losses)
    return result


def tally(candidate_id, baseline_id):
    """The Tally of `candidate_id` against `baseline_id`."""
    return tallies(baseline_id, [candidate_id])[candidate_id]
