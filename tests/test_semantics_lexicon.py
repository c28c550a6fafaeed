"""The WordNet reader (zsp_ros/semantics/lexicon.py) on a tiny database written in WordNet's own format,
and the phrasing rule that uses it: synonyms and direct hypernyms name a word with a kit word, only
next to a kit word, colours only where a colour adjective stands."""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
from runtime_fakes import FakeTextEncoder

from zsp_ros.semantics.lexicon import Lexicon, find_wordnet
from zsp_ros.semantics.phrasing import PhraseNormaliser
from zsp_ros.semantics.phrasing_config import PhrasingConfig
from zsp_ros.semantics.phrasing_encoder import PhrasingEncoder

# (key, words, hypernym keys): a few synsets with WordNet's shape of entries
SYNSETS = {
    "shape": (["shape", "form"], []),
    "star": (["star"], ["shape"]),
    "circle": (["circle"], ["shape"]),
    "blue": (["blue", "blueness"], []),
    "pentagram": (["pentacle", "pentagram", "pentangle"], ["star"]),
    "disc": (["disk", "disc", "saucer"], ["circle"]),
    "cyan": (["cyan"], ["blue"]),
    "dot": (["dot"], []),
    "bus": (["bus", "jalopy", "heap"], ["car"]),
    "car": (["car", "auto"], []),
    "point": (["point"], []),                  # the sharp end: what "pointed" pertains to
    "point_dot": (["point", "dot"], []),       # a later noun sense of "point": a dot
    "checkerboard": (["checkerboard"], []),
    "chessboard": (["chessboard"], ["checkerboard"]),
    "polygon": (["polygon"], []),
    "quadrilateral": (["quadrilateral"], ["polygon"]),
    "rectangle": (["rectangle"], ["quadrilateral"]),
    "triangle": (["triangle"], ["polygon"]),
    "square": (["square"], ["rectangle"]),
    "tile": (["tile"], []),
    "heart": (["heart"], ["shape"]),
    "napkin": (["napkin"], []),
    "check_chip": (["check", "chip"], []),      # a sense of "chip" that is a "check" (a kit word's form)
    "poker_chip": (["chip", "poker_chip"], []),
    "donut": (["doughnut", "donut"], []),
    "checkup": (["checkup"], []),
    "squab": (["squab", "dove"], []),          # "squab" shares four letters with "square", not all of it              # a form of "checks" by rule 1, but no base form of it
    "aid": (["aid"], []),
    "cross": (["cross"], []),
    "corner": (["corner"], ["cross"]),         # stands in for WordNet's corner is-a crossroad (-> "cross")
}
DEFINITIONS = {"tile": 'a flat thin rectangular slab; "he laid the tiles"',   # the rest: "a gloss"
               "poker_chip": "a small disk-shaped counter used to represent money when gambling",
               "donut": "a small ring-shaped friedcake",
               "aid": "medical help"}
# adjective synsets: (key, words, keys of the noun synsets its derivation pointers ("+") name)
ADJECTIVES = {
    "pointed": (["pointed"], ["point"]),
    "round": (["round", "circular"], ["circle"]),
    "rectangular": (["rectangular"], ["rectangle"]),
    "medical": (["medical"], ["checkup"]),
    "three-sided": (["trilateral", "three-sided"], ["triangle"]),
    "cruciform": (["cruciform"], []),
    "three-cornered": (["three-cornered"], []),
}
ADJECTIVE_DEFINITIONS = {"cruciform": "shaped like a cross", "three-cornered": 'having three corners; "a hat"'}


def write_tiny_wordnet(root: Path) -> Path:
    """WordNet database files (wndb(5) layout, byte offsets and all) holding `SYNSETS`."""
    root.mkdir(parents=True, exist_ok=True)
    keys = list(SYNSETS)

    def line(key: str, offsets: dict[str, int]) -> str:
        words, hypernyms = SYNSETS[key]
        pointers = " ".join(f"@ {offsets[h]:08d} n 0000" for h in hypernyms)
        body = f"{offsets[key]:08d} 25 n {len(words):02x} " + " ".join(f"{w} 0" for w in words)
        return f"{body} {len(hypernyms):03d}{' ' + pointers if pointers else ''} | {DEFINITIONS.get(key, 'a gloss')}\n"

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
    (root / "index.verb").write_text(header + "corner v 1 0 1 0 00000000\ndot v 1 0 1 0 00000000\n"
                                     "point v 1 0 1 0 00000000\n",
                                     encoding="latin-1")
    adjective_lines, position = [], len(header)
    adjective_index = []
    for key, (words, targets) in ADJECTIVES.items():
        pointers = " ".join(f"+ {offsets[t]:08d} n 0101" for t in targets)
        adjective_lines.append(f"{position:08d} 00 a {len(words):02x} " + " ".join(f"{w} 0" for w in words)
                               + f" {len(targets):03d} {pointers} | {ADJECTIVE_DEFINITIONS.get(key, 'a gloss')}\n")
        adjective_index += [f"{w} a 1 1 + 1 0 {position:08d}\n" for w in words]
        position += len(adjective_lines[-1].encode("latin-1"))
    (root / "data.adj").write_text(header + "".join(adjective_lines), encoding="latin-1")
    (root / "index.adj").write_text(header + "".join(sorted(adjective_index)), encoding="latin-1")
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
    assert normaliser.interpret("red dotted floor").text == "red dots"     # base form: dotted -> dot
    # only next to a kit word: a lone novel noun stays (WordNet: a bus is a car, a disc a circle)
    assert normaliser.interpret("bus").text == "bus" and normaliser.interpret("disc").text == "disc"
    # a colour reached through WordNet obeys the colour position: "cyan heart" has no other kit word
    assert normaliser.interpret("cyan heart").text == "cyan heart"
    assert normaliser.interpret("cyan star").text == "blue star"
    off = PhraseNormaliser(vocabulary=["red star"], embed=_embed, config=PhrasingConfig(lexicon=False), lexicon=tiny)
    assert off.interpret("red pentagram").text == "red pentagram" and off.lexicon is None


def _embed_by_stem(words: list[str]) -> np.ndarray:
    """A stand-in word embedding in which words sharing their first four letters are one vector
    ("checkerboard" = "checks"), all others orthogonal-ish: rule 1 maps exactly the shared stems."""
    rows = []
    for word in words:
        rng = np.random.default_rng(zlib.crc32(word[:4].encode()))
        rows.append(rng.normal(size=16))
    vectors = np.stack(rows)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_adjectives_read_through_the_nouns_they_pertain_to(tiny):
    """A modifier WordNet derives from a noun is read through that noun's sense only: "round" -> circle;
    "pointed" -> point, the sharp end, which is no kit word, so it stays (its verb base "point" has a
    later noun sense "dot", which would make it "dots"); a head noun is still read as a noun."""
    assert tiny.adjective_nouns("round") == [("circle",)]
    assert tiny.adjective_nouns("pointed") == [("point",)] and tiny.adjective_nouns("disc") == []
    normaliser = PhraseNormaliser(vocabulary=["red star", "green circle", "blue dots"], embed=_embed,
                                  config=PhrasingConfig(colour_survey=False), lexicon=tiny)
    round_thing = normaliser.interpret("blue round thing")
    assert round_thing.text == "blue circle" and round_thing.replacements[0].via == "round pertains to circle"
    pointed = normaliser.interpret("red pointed star")
    assert pointed.text == "red star" and pointed.dropped == ("pointed",) and not pointed.replacements
    assert normaliser.interpret("red point").text == "red dots"          # as a noun, "point" is a dot


def test_a_relative_that_is_another_form_of_a_kit_word(tiny):
    """chessboard is-a checkerboard, and "checkerboard" is a form of the kit word "checks" (rule 1)."""
    normaliser = PhraseNormaliser(vocabulary=["brown checks", "green circle"], embed=_embed_by_stem,
                                  config=PhrasingConfig(colour_survey=False), lexicon=tiny)
    assert normaliser.interpret("brown checkerboard").text == "brown checks"   # rule 1 itself
    chess = normaliser.interpret("brown chessboard")
    assert chess.text == "brown checks" and chess.explanation == "WordNet: chessboard is-a checkerboard"
    assert normaliser.interpret("brown bus").text == "brown bus"              # car is no form of a kit word
    squab = PhraseNormaliser(vocabulary=["red square", "green circle"], embed=_embed_by_stem,
                             config=PhrasingConfig(colour_survey=False), lexicon=tiny)
    assert squab.interpret("red squares").text == "red square"               # the user's own word: rule 1
    assert squab.interpret("red dove").text == "red dove"     # dove = squab, which does not hold "square"


def test_a_definition_gives_a_name_its_missing_shape(tiny):
    """tile: "a flat thin rectangular slab" -> rectangular pertains to rectangle -> the only kit word that
    is-a rectangle is square. Only for a name without a shape word of its own."""
    assert tiny.definition("tile") == "a flat thin rectangular slab"
    normaliser = PhraseNormaliser(vocabulary=["red square", "green circle"], embed=_embed,
                                  config=PhrasingConfig(colour_survey=False), lexicon=tiny)
    tile = normaliser.interpret("green tile")
    assert tile.text == "green square"
    assert tile.explanation == ("WordNet: tile is rectangular (rectangular pertains to rectangle; "
                                "a square is-a rectangle)")
    rectangle = normaliser.interpret("green rectangle")          # the one kit word directly under it
    assert rectangle.text == "green square"
    assert rectangle.explanation == "WordNet: a square is-a rectangle, the only kit word that is"
    assert normaliser.interpret("green shape").text == "green shape"    # the kit's kind itself says nothing
    assert normaliser.interpret("green quadrilateral").text == "green square"      # at any height
    with_triangle = PhraseNormaliser(vocabulary=["red square", "green circle", "blue triangle"], embed=_embed,
                                     config=PhrasingConfig(colour_survey=False), lexicon=tiny)
    assert with_triangle.interpret("green polygon").text == "green polygon"        # two kit words below it
    square_tile = normaliser.interpret("green circle tile")      # has its shape: the definition is not read
    assert square_tile.text == "green circle" and square_tile.dropped == ("tile",)
    off = PhraseNormaliser(vocabulary=["red square", "green circle"], embed=_embed,
                           config=PhrasingConfig(colour_survey=False, definitions=False), lexicon=tiny)
    assert off.interpret("green tile").text == "green tile"


def test_a_stated_shape_and_a_compound_read_as_a_whole(tiny):
    """A definition that states a shape ("ring-shaped") gives it; two words WordNet knows as one noun are
    read together ("poker chip": disk-shaped -> disk is-a circle), not word by word (chip = check)."""
    normaliser = PhraseNormaliser(vocabulary=["blue circle", "brown checks", "yellow ring"], embed=_embed_by_stem,
                                  config=PhrasingConfig(colour_survey=False), lexicon=tiny)
    donut = normaliser.interpret("yellow donut")
    assert donut.text == "yellow ring" and donut.explanation == "WordNet: donut is ring-shaped"
    chip = normaliser.interpret("blue poker chip")
    assert chip.text == "blue circle"
    assert chip.explanation == "WordNet: poker chip is disk-shaped (disk is-a circle)"
    assert normaliser.interpret("blue chip").text == "blue checks"       # alone, "chip" keeps its other sense
    assert normaliser.interpret("blue poker").text == "blue poker"
    # a definition's adjective counts through a kit word's base form only: medical -> checkup is no "checks"
    assert normaliser.interpret("blue aid").text == "blue aid"


def test_hyphenated_words_and_adjective_definitions(tiny):
    """A hyphenated word WordNet knows is read as one word, and never split when it gives nothing
    ("three-cornered" is not a "corner", which WordNet files under crossroad); an adjective with no noun
    pointers is read through the shape its definition states ("cruciform": shaped like a cross), also
    where it stands last (an adjective that is no noun)."""
    normaliser = PhraseNormaliser(vocabulary=["red cross", "pink triangle", "red star"], embed=_embed_by_stem,
                                  config=PhrasingConfig(colour_survey=False), lexicon=tiny)
    sided = normaliser.interpret("pink three-sided shape")
    assert sided.text == "pink triangle" and sided.explanation.startswith("WordNet: three-sided pertains to triangle")
    assert normaliser.interpret("red cornered shape").text == "red cross"    # alone, the word keeps its sense
    cornered = normaliser.interpret("red three-cornered shape")
    assert cornered.text == "red three-cornered shape" and cornered.unknown == ("three", "cornered", "shape")
    cruciform = normaliser.interpret("red cruciform shape")
    assert cruciform.text == "red cross" and "cruciform is shaped like a cross" in cruciform.explanation
    assert normaliser.interpret("red cruciform").text == "red cross"
    assert tiny.adjective_definitions("three-cornered") == ["having three corners"]


def test_two_unknown_forms_give_each_other_context(tiny):
    """'grey dot': neither word is a kit word as typed, each is one without context (a basic colour term,
    a base form); each makes the other a word next to a kit word, so both are read."""
    normaliser = PhraseNormaliser(vocabulary=["gray dots", "red star"], embed=_embed_by_stem,
                                  config=PhrasingConfig(colour_survey=False), lexicon=tiny)
    assert normaliser.interpret("Grey dot").text == "gray dots"
    assert normaliser.interpret("grey napkin").text == "grey napkin"        # napkin gives grey no context


def test_a_colour_with_a_shape_the_kit_does_not_know_is_refused(tiny):
    """The kit's words are kinds of "shape" (WordNet); "red heart" names another shape: refused by name.
    "red napkin" (no shape by WordNet) is added with the warning that it labels red things of any shape."""
    assert tiny.ancestors("heart") == {tiny._lemmas("noun")["shape"][0]: 1}
    encoder = PhrasingEncoder(base=FakeTextEncoder(), vocabulary=["red star", "green circle"],
                              config=PhrasingConfig(colour_survey=False))
    encoder.normaliser.lexicon = tiny
    assert encoder.normaliser.kit_kind() == "shape"
    heart, napkin, star = encoder.interpret(["red heart", "red napkin", "red star"])
    assert encoder.refusal(heart) == (
        "'red heart' names a shape this kit does not know (WordNet: heart is-a shape; its words other than "
        "colours: circle, star): it would label red things of any shape (phrasing setting refuse_other_kinds: "
        "false adds it with a warning)")
    assert encoder.refusal(napkin) is None and "will label red things of any shape" in encoder.caution(napkin)
    assert encoder.refusal(star) is None and encoder.caution(star) is None
    lenient = PhrasingEncoder(base=FakeTextEncoder(), vocabulary=["red star", "green circle"],
                              config=PhrasingConfig(colour_survey=False, refuse_other_kinds=False))
    lenient.normaliser.lexicon = tiny
    assert lenient.refusal(lenient.interpret(["red heart"])[0]) is None


def test_dropping_unknown_words_keeps_a_full_kit_reading_only(tiny):
    """drop_unknown_words: a name with a colour and another kit word is encoded as those; a name with a
    colour word alone (no shape/texture the kit knows) keeps its words, as does the setting off."""
    config = PhrasingConfig(colour_survey=False)
    normaliser = PhraseNormaliser(vocabulary=["red star", "green circle"], embed=_embed, config=config,
                                  lexicon=tiny)
    thing = normaliser.interpret("green round thing")
    assert thing.text == "green circle" and thing.dropped == ("thing",)
    assert thing.explanation == "WordNet: round pertains to circle; left out 'thing' (no word of the kit)"
    assert normaliser.interpret("red yield sign").text == "red yield sign"
    assert normaliser.interpret("star tile").text == "star tile"
    kept = PhraseNormaliser(vocabulary=["red star", "green circle"], embed=_embed,
                            config=PhrasingConfig(colour_survey=False, drop_unknown_words=False), lexicon=tiny)
    assert kept.interpret("green round thing").text == "green circle thing"


@pytest.mark.skipif(find_wordnet() is None, reason="WordNet is not installed (apt-get install wordnet-base)")
def test_installed_wordnet_has_the_relations_the_rule_relies_on():
    lexicon = Lexicon(find_wordnet())
    assert "star" in lexicon.senses("pentagram")[0].hypernyms
    assert any("circle" in s.hypernyms for s in lexicon.senses("disc"))
    assert "dot" in lexicon.base_forms("dotted")
    assert "circle" in lexicon.adjective_nouns("round")[0] and "checkerboard" in lexicon.senses("chessboard")[0].hypernyms
    assert not any("dot" in nouns for nouns in lexicon.adjective_nouns("pointed"))
    assert "three-sided" in lexicon.base_forms("three-sided") and "shaped like a cross" in lexicon.adjective_definitions("cruciform")


def test_an_unreadable_wordnet_turns_the_rule_off_and_adds_go_on(tmp_path):
    """A truncated data file (offsets point past its end): the rule stops with the reason, names still read."""
    root = write_tiny_wordnet(tmp_path / "wn")
    data = (root / "data.noun").read_bytes()
    (root / "data.noun").write_bytes(data[:data.index(b"\n") + 20])      # the header and a piece of a line
    normaliser = PhraseNormaliser(vocabulary=["red star", "blue circle"], embed=_embed,
                                  config=PhrasingConfig(colour_survey=False), lexicon=Lexicon(root))
    assert normaliser.interpret("red pentagram").text == "red pentagram"
    assert normaliser.lexicon is None and "cannot be read" in normaliser.lexicon_problem
    assert normaliser.interpret("navy star").text == "blue star"         # the other rules still work
