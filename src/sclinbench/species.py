"""Species names: common names, binomials, Ensembl dataset prefixes and short labels, in one place.

One species goes by several names across the project: ``human`` (registry keys, the published
tables), ``Homo sapiens`` (obs ``organism``, registries), ``hsapiens`` (Ensembl/BioMart dataset
prefixes, the names of the ortholog tables) and ``H. sapiens`` (figure axes). The functions here
translate between them; nothing else spells a species out.
"""

from __future__ import annotations

#: Binomial (lower case) -> common name, so ``Homo sapiens->Mus musculus`` groups line up with the
#: common names used by the published tables.
COMMON_NAMES = {
    "homo sapiens": "human", "pan troglodytes": "chimpanzee", "gorilla gorilla": "gorilla",
    "macaca mulatta": "macaque", "callithrix jacchus": "marmoset", "mus musculus": "mouse",
    "monodelphis domestica": "opossum", "ornithorhynchus anatinus": "platypus",
    "gallus gallus": "chicken",
}


def common_name(name: str) -> str:
    """Common lower-case species name (``"Homo sapiens"`` -> ``"human"``; others lower-cased)."""
    key = " ".join(str(name).replace("_", " ").split()).lower()
    return COMMON_NAMES.get(key, key)


def short_label(name: str) -> str:
    """Short axis label for a species: binomials abbreviated (``Homo sapiens`` -> ``H. sapiens``)."""
    words = str(name).split()
    if len(words) == 2 and words[0][:1].isupper() and words[1].islower():
        return f"{words[0][0]}. {words[1]}"
    return str(name)
