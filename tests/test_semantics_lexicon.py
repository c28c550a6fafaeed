"""The WordNet reader (zsp_ros/semantics/lexicon.py) on a tiny database written in WordNet's own format,
and the phrasing rule that uses it: synonyms and direct hypernyms name a word with a kit word, only
next to a kit word, colours only where a colour adjective stands."""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from zsp_ros.semantics.lexicon import Lexicon, find_wordnet
from zsp_ros.semantics.phrasing import PhraseNormaliser, PhrasingConfig

# (key, words, hypernym keys): a few synsets with WordNet's shape of entries
SYNSETS = {
    "star": (["star"], []),
    "circle": (["circle"], []),
    "blue": (["blue", "blueness"], []),
    "pentagram": (["pentacle", "pentagram", "pentangle"], ["star"]),
    "disc": (["disk", "disc", "saucer"], ["circle"]),
    "cyan": (["cyan"], ["blue"]),
    "dot": (["dot"], []),
    "bus": (["bus", "jalopy", "heap"], ["car"]),
    "car": (["car", "auto"], []),
}


def write_tiny_wordnet(root: Path) -> Path:
    """WordNet database files (wndb(5) layout, byte offsets and all) holding `SYNSETS`."""
    root.mkdir(parents=True, exist_ok=True)
    keys = list(SYNSETS)

    def line(key: str, offsets: dict[str, int]) -> str:
        words, hypernyms = SYNSETS[key]
        pointers = " ".join(f"@ {offsets[h]:08d} n 0000" for h in hypernyms)
        body = f"{offsets[key]:08d} 25 n {len(words):02x} " + " ".join(f"{w} 0" for w in words)
        return f"{body} {len(hypernyms):03d}{' ' + pointers if pointers else ''} | a gloss\n"

    header = "  1 This is a licence header line, as in WordNet's files.\n"
    offsets = {k: 0 for k in keys}
    for _ in range(2):                          # lengths do not depend on the (fixed-width) offsets
        position = len(header)
        for k in keys:
            offsets[k] = position
            position += len(line(k, offsets).encode("latin-1"))
    (root / "data.noun").write_text(header + "".join(line(k, offsets) for k in keys), encoding="latin-1")
    lemmas: dict[str, list[int]] = {}
    for k in keys:
        for w in SYNSETS[k][0]:
            lemmas.setdefault(w, []).append(offsets[k])
    index = "".join(f"{w} n {len(o)} 0 {len(o)} 0 " + " ".join(f"{x:08d}" for x in o) + "\n"
                    for w, o in sorted(lemmas.items()))
    (root / "index.noun").write_text(header + index, encoding="latin-1")
    (root / "index.verb").write_text(header + "dot v 1 0 1 0 00000000\n", encoding="latin-1")
    (root / "index.adj").write_text(header, encoding="latin-1")
    (root / "noun.exc").write_text("", encoding="latin-1")
    (root / "verb.exc").write_text("dotted dot\n", encoding="latin-1")
    (root / "adj.exc").write_text("", encoding="latin-1")
    return root


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Lexicon:
    return Lexicon(write_tiny_wordnet(tmp_path_factory.mktemp("wordnet")))


def test_reader_follows_offsets_synonyms_and_hypernyms(tiny):
    pentagram, = tiny.senses("pentagram")
    assert pentagram.rank == 0 and pentagram.synonyms == ("pentacle", "pentagram", "pentangle")
    assert pentagram.hypernyms == ("star",)
    assert tiny.senses("zebra") == []
    assert tiny.base_forms("dotted") == ["dot"]                    # verb exception list
    assert tiny.base_forms("discs") == ["disc"]                    # noun suffix rule
    assert tiny.base_forms("dots", ("noun",)) == ["dot"]


def test_missing_database_is_named(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="wordnet-base"):
        Lexicon(tmp_path)
    monkeypatch.setenv("ZSP_WORDNET_DIR", str(tmp_path))
    assert find_wordnet() is None
    monkeypatch.setenv("ZSP_WORDNET_DIR", str(write_tiny_wordnet(tmp_path / "wn")))
    assert find_wordnet() == tmp_path / "wn"


def _embed(words: list[str]) -> np.ndarray:
    """A stand-in word embedding: nothing is similar to anything (so rule 1 maps nothing)."""
    rng = np.random.default_rng(zlib.crc32(" ".join(words).encode()))
    vectors = rng.normal(size=(len(words), 16))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_lexicon_rule_names_a_word_with_a_kit_word(tiny):
    normaliser = PhraseNormaliser(vocabulary=["red star", "green circle", "blue dots"], embed=_embed,
                                  config=PhrasingConfig(colour_survey=False), lexicon=tiny)
    interpretation = normaliser.interpret("red pentagram")
    assert interpretation.text == "red star"
    rule, = interpretation.replacements
    assert (rule.rule, rule.via) == ("lexicon", "pentagram is-a star")
    assert interpretation.explanation == "WordNet: pentagram is-a star"
    assert normaliser.interpret("green disc").text == "green circle"
    assert normaliser.interpret("green disc circle").text == "green circle"      # a repeat is said once
    assert normaliser.interpret("red dotted floor").text == "red dots floor"     # base form: dotted -> dot
    # only next to a kit word: a lone novel noun stays (WordNet: a bus is a car, a disc a circle)
    assert normaliser.interpret("bus").text == "bus" and normaliser.interpret("disc").text == "disc"
    # a colour reached through WordNet obeys the colour position: "cyan heart" has no other kit word
    assert normaliser.interpret("cyan heart").text == "cyan heart"
    assert normaliser.interpret("cyan star").text == "blue star"
    off = PhraseNormaliser(vocabulary=["red star"], embed=_embed, config=PhrasingConfig(lexicon=False), lexicon=tiny)
    assert off.interpret("red pentagram").text == "red pentagram" and off.lexicon is None


@pytest.mark.skipif(find_wordnet() is None, reason="WordNet is not installed (apt-get install wordnet-base)")
def test_installed_wordnet_has_the_relations_the_rule_relies_on():
    lexicon = Lexicon(find_wordnet())
    assert "star" in lexicon.senses("pentagram")[0].hypernyms
    assert any("circle" in s.hypernyms for s in lexicon.senses("disc"))
    assert "dot" in lexicon.base_forms("dotted")


def test_an_unreadable_wordnet_turns_the_rule_off_and_adds_go_on(tmp_path):
    """A truncated data file (offsets point past its end): the rule stops with the reason, names still read."""
    root = write_tiny_wordnet(tmp_path / "wn")
    data = (root / "data.noun").read_bytes()
    (root / "data.noun").write_bytes(data[:len(data) // 3])
    normaliser = PhraseNormaliser(vocabulary=["red star", "blue circle"], embed=_embed,
                                  config=PhrasingConfig(colour_survey=False), lexicon=Lexicon(root))
    assert normaliser.interpret("red pentagram").text == "red pentagram"
    assert normaliser.lexicon is None and "cannot be read" in normaliser.lexicon_problem
    assert normaliser.interpret("navy star").text == "blue star"         # the other rules still work
