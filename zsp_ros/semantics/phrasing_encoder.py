"""`PhrasingEncoder`: a kit's text encoder whose names are first read by the phrasing rewrite
(`PhraseNormaliser`, zsp_ros/semantics/phrasing.py), and which says which names must not be added
(`refusal`) or deserve a warning (`caution`)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from zsp_ros.semantics.base import TextEncoder, check_names, l2_normalise
from zsp_ros.semantics.colour_words import BASIC_COLOUR_TERMS
from zsp_ros.semantics.interpretation import Interpretation
from zsp_ros.semantics.phrasing import PhraseNormaliser
from zsp_ros.semantics.phrasing_config import PhrasingConfig, load_phrasing_config
from zsp_ros.semantics.word_roles import WordRoles


class PhrasingEncoder(TextEncoder):
    """A text encoder whose names are first rewritten by a `PhraseNormaliser`.

    Args:
        base: the kit's text encoder (its ``identifier`` and ``dim`` are this encoder's).
        vocabulary: the names the kit's generator was trained on (its seen category names).
        config: `PhrasingConfig` (default: `load_phrasing_config()`).
        colour_table: as `PhraseNormaliser`.
        stuff: the names of ``vocabulary`` that are stuff categories (the rest are things), for
            ``refuse_role_clashes`` (zsp_ros.semantics.word_roles); none: that rule refuses nothing.

    ``encode(names)`` -> float32 [N, D], L2-normalised: ``normalise((1 - w) e(rewritten) + w e(name))``
    with ``w = config.raw_weight``; a name with nothing rewritten gets exactly ``base.encode([name])``.
    """

    def __init__(self, *, base: TextEncoder, vocabulary: Sequence[str], config: PhrasingConfig | None = None,
                 colour_table: Mapping[str, tuple[int, int, int]] | None = None, stuff: Sequence[str] = ()) -> None:
        self.base = base
        self.identifier = base.identifier
        self.dim = base.dim
        self.config = config or load_phrasing_config()
        self.normaliser = PhraseNormaliser(vocabulary=vocabulary, embed=base.encode, config=self.config,
                                           colour_table=colour_table)
        self.roles = WordRoles.from_names(vocabulary, stuff)

    def interpret(self, names: Sequence[str]) -> list[Interpretation]:
        """What every name becomes before it is encoded."""
        return [self.normaliser.interpret(n) for n in check_names(names)]

    def warm_up(self) -> None:
        """Read what the rewrite reads on first need (the word vectors of the vocabulary, the lexicon's
        indexes), so that the first add with an unknown word does not pay for it."""
        self.normaliser.prepare()

    def refusal(self, interpretation: Interpretation) -> str | None:
        """Why a name must not be added, or None: with ``refuse_unknown_names``, a name none of whose
        words is a word of the kit's names. The generator has learnt what those words look like and
        recombines them; for a name with none of them it extrapolates, and the head then gives the
        name whatever real objects lie nearest: on the synthetic world (results/vocabulary.md) every
        such name fired on objects of other categories, 5-8 % of all predicted segments for ten."""
        if not (self.config.enabled and self.config.refuse_unknown_names):
            return None
        if interpretation.kit_words:
            other_colour = self._other_colour(interpretation)
            if other_colour is not None:
                return other_colour
            clash = self.roles.clash(interpretation.kit_words) if self.config.refuse_role_clashes else None
            if clash is not None:
                read = f" (read as {interpretation.text!r})" if interpretation.changed else ""
                return (f"{interpretation.name!r}{read} puts together words this kit's names never do: {clash[0]!r} "
                        f"names only things (objects) in them and {clash[1]!r} only stuff (backgrounds); the "
                        f"kit has seen nothing like it and would label other things with it (phrasing setting "
                        f"refuse_role_clashes: false adds it)")
            caution = self.caution(interpretation)
            if caution is None:
                return None
            if self.config.refuse_colour_only_names:
                return (f"{caution}; name a shape it knows (phrasing setting refuse_colour_only_names: false "
                        f"adds such names with a warning)")
            kinds = [(w, self.normaliser.other_kind(w)) for w in interpretation.unknown]
            word, kind = next(((w, k) for w, k in kinds if k is not None), ("", None))
            if kind is None:
                return None
            mine = [w for w in self.normaliser.words if not self.normaliser.is_colour_word(w)]
            return (f"{interpretation.name!r} names a {kind} this kit does not know (WordNet: {word} is-a {kind}; "
                    f"its words other than colours: {', '.join(mine[:30])}): it would label "
                    f"{interpretation.kit_words[0]} things of any {kind} (phrasing setting refuse_other_kinds: "
                    f"false adds it with a warning)")
        known = self.normaliser.words
        shown = ", ".join(known[:40]) + (f", ... ({len(known)} words)" if len(known) > 40 else "")
        return (f"{interpretation.name!r} has no word this kit knows (its names use: {shown}); the kit can "
                f"only recombine those words and would label other things with it (phrasing setting "
                f"refuse_unknown_names: false adds such names anyway)")

    def _other_colour(self, interpretation: Interpretation) -> str | None:
        """With ``refuse_other_colours``: why a name with a basic colour term that is none of the kit's
        colours and no shade of one ("black square": the kit's colours have no black) must not be added,
        or None. Only for a kit whose names use at least two colours; the generator never saw that colour
        and would put the name's fakes on the kit's shapes of some other colour."""
        if not self.config.refuse_other_colours:
            return None
        mine = [w for w in self.normaliser.words if self.normaliser.is_colour_word(w)]
        others = [w for w in interpretation.unknown if w in BASIC_COLOUR_TERMS]
        if len(mine) < 2 or not others or any(self.normaliser.is_colour_word(w) for w in interpretation.kit_words):
            return None
        return (f"{interpretation.name!r} names a colour this kit does not know ({others[0]}; its colours: "
                f"{', '.join(mine)}): it would label {', '.join(interpretation.kit_words)} things of another "
                f"colour (phrasing setting refuse_other_colours: false adds it)")

    def caution(self, interpretation: Interpretation) -> str | None:
        """A warning for a name whose only kit words are colours ("red heart", "green sticky note"), or
        None: the kit can recombine its colour but not what the other words look like, so the name
        will label objects of that colour whatever their shape. Only where unknown names are refused
        (a kit that only recombines its words; CLIP knows what a heart looks like)."""
        if not (self.config.enabled and self.config.refuse_unknown_names) or not interpretation.kit_words:
            return None
        colours = [w for w in interpretation.kit_words if self.normaliser.is_colour_word(w)]
        if len(colours) < len(interpretation.kit_words) or not interpretation.unknown:
            return None
        shapes = [w for w in self.normaliser.words if not self.normaliser.is_colour_word(w)]
        shown = ", ".join(shapes[:30]) + (f", ... ({len(shapes)} words)" if len(shapes) > 30 else "")
        return (f"this kit knows only the colour of {interpretation.name!r} ({', '.join(dict.fromkeys(colours))}), "
                f"not what {', '.join(repr(w) for w in interpretation.unknown)} looks like: it will label "
                f"{colours[0]} things of any shape (its shape and texture words: {shown})")

    def _encode(self, names: list[str]) -> np.ndarray:
        texts = [i.text for i in self.interpret(names)]
        try:
            rewritten = self.base.encode(texts)
        except (ValueError, KeyError, TypeError) as exc:   # say what was typed, not only what it became
            shown = ", ".join(repr(n) if t == n else f"{n!r} (read as {t!r})" for n, t in zip(names, texts))
            raise type(exc)(f"{exc} [names: {shown}]") from exc
        w = self.config.raw_weight
        if w == 0.0:
            return rewritten
        raw = self.base.encode(names)
        changed = np.array([t != n for t, n in zip(texts, names)])[:, None]
        blend = np.where(changed, (1.0 - w) * rewritten + w * raw, raw)
        return l2_normalise(blend, what=self.identifier, names=names)

    def __repr__(self) -> str:
        return f"PhrasingEncoder(base={self.base!r}, words={len(self.normaliser.words)})"
