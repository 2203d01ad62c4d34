"""Species names: common names, binomials, Ensembl dataset prefixes and short labels, in one place.

One species goes by several names across the project: ``human`` (registry keys, the published
tables), ``Homo sapiens`` (obs ``organism``, registries), ``hsapiens`` (Ensembl/BioMart dataset
prefixes, the names of the ortholog tables) and ``H. sapiens`` (figure axes). The functions here
translate between them; nothing else spells a species out.
"""

from __future__ import annotations

import re

from sclinbench.errors import SclinbenchError

#: common name -> (Ensembl dataset prefix, the name BioMart uses in its column headers)
ENSEMBL = {
    "human": ("hsapiens", "Human"),
    "mouse": ("mmusculus", "Mouse"),
    "rat": ("rnorvegicus", "Rat"),
    "zebrafish": ("drerio", "Zebrafish"),
    "macaque": ("mmulatta", "Macaque"),
    "marmoset": ("cjacchus", "White-tufted-ear marmoset"),
    "mouse_lemur": ("mmurinus", "Mouse Lemur"),
    "pig": ("sscrofa", "Pig"),
    "chicken": ("ggallus", "Chicken"),
    "xenopus": ("xtropicalis", "Tropical clawed frog"),
    "fly": ("dmelanogaster", "Drosophila melanogaster"),
    "worm": ("celegans", "Caenorhabditis elegans"),
    "cow": ("btaurus", "Cow"),
    "dog": ("clfamiliaris", "Dog"),
    "chimpanzee": ("ptroglodytes", "Chimpanzee"),
}
#: Ensembl gene id prefix -> species (for messages about gene ids)
ENSEMBL_GENE_PREFIXES = {
    "ENSG": "human", "ENSMUSG": "mouse", "ENSRNOG": "rat", "ENSDARG": "zebrafish", "ENSMMUG": "macaque",
    "ENSSSCG": "pig", "ENSGALG": "chicken", "ENSCJAG": "marmoset", "ENSMICG": "mouse lemur",
    "ENSBTAG": "cow", "ENSCAFG": "dog", "ENSOCUG": "rabbit", "ENSPTRG": "chimpanzee",
}
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


def ensembl_prefix(name: str, strict: bool = True) -> str:
    """The Ensembl/BioMart dataset prefix: ``human`` / ``Homo sapiens`` / ``hsapiens`` -> ``hsapiens``.

    A common name of :data:`ENSEMBL`, a binomial (genus initial + species: ``Mus musculus`` ->
    ``mmusculus``), a trinomial (``Canis lupus familiaris`` -> ``clfamiliaris``) or a prefix itself.
    Anything else raises :class:`SclinbenchError`, or with ``strict=False`` comes back lower-cased
    without spaces (a name to compare, e.g. the synthetic atlas' ``alpha``).
    """
    s = " ".join(str(name).strip().lower().replace("-", " ").split())
    key = s.replace(" ", "_")
    if key in ENSEMBL:
        return ENSEMBL[key][0]
    parts = s.split()
    if len(parts) in (2, 3) and all(p.isalpha() for p in parts):
        return "".join(p[0] for p in parts[:-1]) + parts[-1]
    if re.fullmatch(r"[a-z]+", s):
        return s
    if not strict:
        return s.replace(" ", "")
    raise SclinbenchError(
        f"species {name!r} is not a known name ({', '.join(sorted(ENSEMBL))}), a binomial like "
        "'Homo sapiens' or an Ensembl dataset prefix like 'hsapiens'; use one of those"
    )


def biomart_names(name: str) -> set[str]:
    """Lower-case names BioMart may use for species ``name`` in its column headers."""
    wanted = {str(name).lower()}
    key = str(name).lower().replace(" ", "_")
    if key in ENSEMBL:
        wanted.add(ENSEMBL[key][1].lower())
    try:
        prefix = ensembl_prefix(name)
    except SclinbenchError:
        return wanted
    return wanted | {display.lower() for ensembl, display in ENSEMBL.values() if ensembl == prefix}


def biomart_display_names() -> set[str]:
    """Every species name of :data:`ENSEMBL` as BioMart writes it in headers (lower case)."""
    return {display.lower() for _, display in ENSEMBL.values()}
