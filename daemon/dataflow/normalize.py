"""Text normalisation for blocklist matching (supervisor process).

Both the blocklist and the text go through the same fold, so that what a reader sees as the same word
matches: compatibility decomposition (NFKD: fullwidth `ｂａｄ`, ligatures `ﬁ`, circled and styled letters),
case folding (`BAD`, `ß` → `ss`), then removal of what a reader does not see as a letter: combining marks
(`b̈ąd`), zero-width and other format characters (ZWSP, ZWJ, ZWNJ, word joiner, soft hyphen, BOM, bidi
controls, variation selectors, tag characters), and a small table of confusables (Cyrillic and Greek letters
that look Latin, `раураl` → `paypal`). Any run of whitespace counts as one space for phrases.

Two paths, one fold. `fold` runs on every message and is C-speed (`unicodedata.normalize`, `str.casefold`,
`str.translate`); `fold_with_map` walks the text character by character to keep, for every folded
character, the index of the original one it came from, and runs only when a mask has to be placed.

Why the removal table lists ranges instead of every combining mark: the marks of other scripts (Devanagari
vowel signs, Hebrew points) are parts of their words, and dropping them would make unrelated words equal.
"""

from __future__ import annotations

import functools
import unicodedata

# Ranges whose combining marks (Mn/Me) and format characters (Cf) are removed: diacritics added to Latin,
# Greek and Cyrillic text, invisible characters, variation selectors and tags.
_REMOVED_RANGES = (
    (0x0300, 0x036F),  # combining diacritical marks (includes U+034F combining grapheme joiner)
    (0x0483, 0x0489),  # Cyrillic combining marks
    (0x00AD, 0x00AD),  # soft hyphen
    (0x061C, 0x061C),  # Arabic letter mark
    (0x180E, 0x180E),  # Mongolian vowel separator
    (0x1AB0, 0x1AFF),  # combining diacritical marks extended
    (0x1DC0, 0x1DFF),  # combining diacritical marks supplement
    (0x200B, 0x200F),  # ZWSP, ZWNJ, ZWJ, LRM, RLM
    (0x202A, 0x202E),  # bidi embedding and override
    (0x2060, 0x206F),  # word joiner, invisible operators, bidi isolates
    (0x20D0, 0x20FF),  # combining marks for symbols
    (0xFE00, 0xFE0F),  # variation selectors
    (0xFE20, 0xFE2F),  # combining half marks
    (0xFEFF, 0xFEFF),  # BOM / zero-width no-break space
    (0xE0000, 0xE007F),  # tag characters
    (0xE0100, 0xE01EF),  # variation selectors supplement
)
# Letters that render like a Latin letter (Unicode's confusables, the common part), after case folding.
_CONFUSABLES = {
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c",
    "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԁ": "d", "һ": "h", "ɡ": "g",
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t",
    "υ": "u", "χ": "x", "ı": "i", "ℓ": "l",
}  # fmt: skip


def _table() -> dict[int, str | None]:
    table: dict[int, str | None] = {}
    for low, high in _REMOVED_RANGES:
        for code in range(low, high + 1):
            if unicodedata.category(chr(code)) in ("Mn", "Me", "Cf"):
                table[code] = None
    table.update({ord(char): latin for char, latin in _CONFUSABLES.items()})
    return table


_TABLE = _table()


def fold(text: str) -> str:
    """The matching form of `text` (see the module docstring)."""
    if text.isascii():
        return text.lower()
    # NFKD twice: case folding can produce characters that decompose further (e.g. U+1E9E → "ss" is fine,
    # but U+0130 'İ' folds to 'i' + U+0307).
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
    return folded.translate(_TABLE)


@functools.lru_cache(maxsize=4096)
def _fold_char(char: str) -> str:
    return fold(char)


def fold_with_map(text: str) -> tuple[str, list[int]]:
    """`fold(text)` character by character, with the index in `text` each folded character came from."""
    pieces: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        folded = char.lower() if char.isascii() else _fold_char(char)
        pieces.append(folded)
        origin.extend([index] * len(folded))
    return "".join(pieces), origin
