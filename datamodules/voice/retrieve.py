"""Which passage of the speaker's lectures answers a client turn, and the part of it that replies.

TF-IDF (uni- and bigrams, English stop words out, sublinear tf, l2-normalised) over every passage;
a client turn is answered by the passage with the highest cosine similarity among its candidates
(the conversation's lecture, minus passages it already used), and the reply is the run of that
passage's sentences, `min_words` to `max_words` long, that carries most of the turn's terms
(weighted by idf) and stands alone (datamodules/voice/spans.py): a verbatim span, trimmed to
conversational length, about what was asked, that no more than `max_uses` conversations share.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from datamodules.voice.chunk import Passage
from datamodules.voice.clean import normalized_words
from datamodules.voice.punctuate import split_sentences
from datamodules.voice.spans import SpanLedger, ends_cleanly, is_opening, starts_cleanly

# Words too general to be what a client asks about ("say", "hours"): never a topic on their own.
GENERIC = frozenset(
    "say says said know think want wants feel feels like just really thing things people way time times "
    "going get got make makes lot little right okay yeah mean means need needs let come look looks hours "
    "day days year years today start good bad kind sort actually maybe probably able different went "
    "yes try tell told talk talking use used happens happen long new old week ago bit anymore life "
    "person care begin saying loud eating".split()
)
# A sentence that repeats the client's own words this much is the speaker's own question, which
# the client asked: the reply is what he says after it.
ECHO_SHARE = 0.7


@dataclass(frozen=True)
class Reply:
    text: str
    row: int  # the passage it comes from
    start: int  # its word span in the cleaned transcript
    end: int
    score: float  # cosine similarity of the client turn and the passage


class PassageIndex:
    def __init__(self, passages: list[Passage]):
        self.passages = passages
        self.vectorizer = TfidfVectorizer(
            stop_words="english",
            ngram_range=(1, 2),
            sublinear_tf=True,
            token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z']+\b",  # "you've" stays one (stop) word, not "ve"
        )
        self.matrix = self.vectorizer.fit_transform([p.text for p in passages]).tocsr()
        self.vocabulary = self.vectorizer.get_feature_names_out()
        self.column = self.vectorizer.vocabulary_
        self.idf_of_column = self.vectorizer.idf_
        self.idf = dict(zip(self.vocabulary, self.vectorizer.idf_))
        self.analyzer = self.vectorizer.build_analyzer()
        self.lowered = [p.text.lower() for p in passages]
        self.rows_of: dict[str, list[int]] = {}
        for row, passage in enumerate(passages):
            self.rows_of.setdefault(passage.lecture_id, []).append(row)

    def vector(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(columns, weights) of the text's l2-normalised TF-IDF vector: what
        `vectorizer.transform` computes (sublinear tf x idf), without its per-call validation,
        which costs more than the arithmetic for one short text."""
        counts: dict[int, int] = {}
        for term in self.analyzer(text):
            column = self.column.get(term)
            if column is not None:
                counts[column] = counts.get(column, 0) + 1
        if not counts:
            return np.zeros(0, dtype=int), np.zeros(0)
        columns = np.fromiter(counts, dtype=int, count=len(counts))
        weights = (1 + np.log(np.fromiter(counts.values(), dtype=float))) * self.idf_of_column[columns]
        return columns, weights / np.linalg.norm(weights)

    def key_terms(
        self, text: str, count: int, avoid: set[str] = frozenset(), prefer: list[str] = ()
    ) -> list[str]:
        """The text's highest-weighted terms without generic words; terms from `prefer` (the
        lecture's key topics) first."""
        columns, weights = self.vector(text)
        spoken = " " + " ".join(normalized_words(text)) + " "
        weighted = []
        for position, weight in zip(columns, weights):
            term = str(self.vocabulary[position])
            words = term.split()
            if (
                len(term) > 3
                and "'" not in term
                and not set(words) & avoid
                # "people pleasing" stays, "people" alone does not
                and not set(words) & GENERIC - ({"people"} if len(words) > 1 else set())
                and f" {term} " in spoken  # a bigram across a dropped stop word is not a phrase
            ):
                weighted.append((-weight * (1.5 if len(words) > 1 else 1.0), term))
        terms = [term for _, term in sorted(weighted)]
        preferred = [t for t in terms if t in set(prefer)]
        return (preferred + [t for t in terms if t not in preferred])[:count]

    def ranked(self, query: str, lecture_id: str, exclude: set[int]) -> list[tuple[int, float]]:
        """The lecture's passages (minus `exclude`) by cosine with the query, best first (the
        earliest of equals first)."""
        rows = [r for r in self.rows_of.get(lecture_id, []) if r not in exclude]
        if not rows:
            return []
        columns, weights = self.vector(query)
        scores = np.asarray(self.matrix[rows][:, columns] @ weights).ravel()
        order = sorted(range(len(rows)), key=lambda i: (-scores[i], i))
        return [(rows[i], float(scores[i])) for i in order]

    def sentences_of(self, row: int) -> list[tuple[str, int, int]]:
        """(sentence, start, end) with word spans in the cleaned transcript."""
        passage = self.passages[row]
        out, position = [], passage.start
        for sentence in split_sentences(passage.text):
            size = len(sentence.split())
            out.append((sentence, position, position + size))
            position += size
        return out

    def following(self, row: int, exclude: set[int]) -> int | None:
        """The next passage of the same lecture when it continues this one word for word."""
        after = row + 1
        if (
            after < len(self.passages)
            and after not in exclude
            and self.passages[after].lecture_id == self.passages[row].lecture_id
            and self.passages[after].start == self.passages[row].end
        ):
            return after
        return None

    def sentence_starts(self, lecture_id: str, start: int, end: int) -> list[int]:
        """First-word positions of the lecture's sentences inside the word span [start, end)."""
        return [
            first
            for row in self.rows_of.get(lecture_id, [])
            if self.passages[row].end > start and self.passages[row].start < end
            for _, first, _ in self.sentences_of(row)
            if start <= first < end
        ]

    def reply(
        self,
        query: str,
        lecture_id: str,
        exclude: set[int],
        min_words: int,
        max_words: int,
        ledger: SpanLedger | None = None,
    ) -> Reply | None:
        """The best window of the best-matching passage that stands alone (datamodules/voice/spans.py)
        and whose sentences the ledger still allows; the next passage when the best has none."""
        query_terms = set(self.analyzer(query))
        query_words = set(normalized_words(query))
        for row, score in self.ranked(query, lecture_id, exclude):
            found = self.window(row, query_terms, query_words, exclude, min_words, max_words, lecture_id, ledger)
            if found is not None:
                first, last, sentences = found
                text = " ".join(sentence for sentence, _, _ in sentences[first:last])
                text = text[:1].upper() + text[1:]
                return Reply(text, row, sentences[first][1], sentences[last - 1][2], score)
        return None

    def window(
        self,
        row: int,
        query_terms: set[str],
        query_words: set[str],
        exclude: set[int],
        min_words: int,
        max_words: int,
        lecture_id: str,
        ledger: SpanLedger | None,
    ) -> tuple[int, int, list[tuple[str, int, int]]] | None:
        sentences = self.sentences_of(row)

        def echoes(sentence: str) -> bool:
            words = normalized_words(sentence)
            return bool(words) and sum(w in query_words for w in words) >= ECHO_SHARE * len(words)

        echoed = [i for i, (sentence, _, _) in enumerate(sentences) if echoes(sentence)]
        if echoed:
            # The client asked the speaker's own question: his answer is what follows it, running
            # on into the next passage when the question ends this one.
            sentences = sentences[echoed[-1] + 1 :]
            following = self.following(row, exclude)
            if following is not None:
                sentences += self.sentences_of(following)
            weights = [1.0] + [0.0] * (len(sentences) - 1)  # the window that starts right after it
        else:
            weights = [
                sum(self.idf.get(t, 0.0) for t in set(self.analyzer(sentence)) & query_terms)
                for sentence, _, _ in sentences
            ]
        best, best_key = None, None
        for first in range(len(sentences)):
            if not starts_cleanly(sentences[first][0]) or is_opening(sentences[first][0]):
                continue
            for last in range(first + 1, len(sentences) + 1):
                sentence, _, _ = sentences[last - 1]
                size = sentences[last - 1][2] - sentences[first][1]
                if is_opening(sentence) or (size > max_words and last > first + 1):
                    break
                if size < min_words or not ends_cleanly(sentence):
                    continue
                starts = [start for _, start, _ in sentences[first:last]]
                if ledger is not None and not ledger.available(lecture_id, starts):
                    break
                key = (sum(weights[first:last]), -first)
                if best_key is None or key > best_key:
                    best, best_key = (first, last), key
                break  # the shortest window from `first` that is long enough and ends cleanly
        return (*best, sentences) if best else None
