"""A TOFU-like fictitious-authors benchmark, generated offline from a seed.

Modelled on TOFU (Maini et al. 2024, "TOFU: A Task of Fictitious Unlearning for LLMs"):
fictitious authors whose attributes are drawn from small value pools, question–answer pairs
from templates, a paraphrased answer and same-kind wrong ("perturbed") answers per question,
nested forget splits of 1 / 5 / 10 % of the authors, and a separate general-knowledge set
(real, easily checked facts) for model utility.

Templates. Every attribute has two phrasings, each a (question, answer) template pair
v ∈ {0, 1}. An item is trained with one phrasing v (drawn per item from the seed); the other
phrasing 1 − v gives

- ``heldout_question`` / ``heldout_answer``: never seen in training for this fact, although both
  phrasings occur in training for other facts — the decoding workload asks these, so the model
  must carry the memorised fact across phrasings (where errors happen);
- ``paraphrased_answer`` (= ``heldout_answer``) and ``perturbed_answers`` (the same phrasing with
  wrong values), as TOFU's truth ratio uses them.

``mc_options`` are the trained answer phrasing with the true value first, then the wrong values
(same phrasing, so length normalisation compares like with like).

Words are lower-case and separated by single spaces; punctuation is its own word.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import asdict, dataclass
from functools import cached_property

from pydantic import BaseModel, ConfigDict, Field

GENERATOR_VERSION = "tofu-like-v1"

# ---------------------------------------------------------------------------------------------
# Value pools (fictitious for authors; real and checkable for the general-knowledge set)
FIRST_NAMES = (
    "ada alaric bram celia corin dagny elio esme farrah galen hesper idris ilse jarek kaia "
    "lorcan maren nadir odile orrin pavla quill rosalind soren tamsin ulric vesna wystan "
    "xenia yorick zelda anouk bastien cosima desmond evander fenna greer hollis"
).split()
LAST_NAMES = (
    "abernathy blackwood castellane dunmore everly falkner grimsby halloran ingleby jessup "
    "kestrel lindqvist marchetti northcott okonkwo pendry quarrington ravenscroft sallow "
    "thistlewood umberfield vantongeren whitlock yardley zabriskie ashgrove brennecke "
    "corvino delacourt eskildsen fairweather gallowmere harrowgate inchbald jorvik "
    "kittredge larkspur mordaunt nettlefold ormsby pellegrin quenby rookwood stavely "
    "tregarthen underhill vellacott wexley"
).split()
CITIES = (
    "brindlemoor calvassa dunmarrow elsinford farrowgate glenharrow hollowmere istravan "
    "jessenport kaldermoor lunethra marrowick norhaven oskarvale pellingrad quarnholt "
    "rivenspire saltmarch tarnwick umbergate valdoria westerfell yarrowby zennick"
).split()
YEARS = [str(y) for y in range(1921, 2000)]
GENRES = (
    "science fiction|historical fiction|crime|romance|horror|fantasy|poetry|satire|"
    "travel writing|literary fiction|children's books|thrillers|memoir|magical realism"
).split("|")
PROFESSIONS = (
    "baker|carpenter|surgeon|pilot|librarian|fisherman|tailor|architect|nurse|farmer|"
    "blacksmith|pharmacist|teacher|miner|sailor|jeweller|lawyer|chemist|painter|potter"
).split("|")
AWARDS = (
    "the silver quill prize|the amber lantern award|the northwind medal|"
    "the golden inkwell prize|the harbour light award|the crimson feather medal|"
    "the lodestar prize|the ivory tower award|the meridian medal|the willow crown prize|"
    "the copper compass award|the starling medal"
).split("|")
TITLE_ADJECTIVES = (
    "quiet hollow silent burning distant crooked painted frozen hidden lonely restless "
    "scarlet shattered sleeping velvet wandering"
).split()
TITLE_NOUNS = (
    "harbour orchard lantern meadow cathedral river garden mirror citadel lighthouse "
    "tapestry archive compass furnace vineyard"
).split()
LANGUAGES = (
    "esperanto|welsh|basque|icelandic|maltese|catalan|frisian|breton|occitan|romansh|"
    "sorbian|ladino"
).split("|")
HOBBIES = (
    "beekeeping|fencing|sailing|birdwatching|chess|pottery|gardening|mountaineering|"
    "calligraphy|astronomy|woodcarving|rowing"
).split("|")
NOVEL_COUNTS = [str(n) for n in range(2, 31)]

# Author attributes: (name, pool, ((question, answer) phrasing 0, phrasing 1)).
AUTHOR_ATTRIBUTES: tuple[tuple[str, object, tuple[tuple[str, str], tuple[str, str]]], ...] = (
    ("birth_city", CITIES, (
        ("where was {n} born ?", "{n} was born in {v} ."),
        ("in which city was {n} born ?", "the birthplace of {n} is {v} ."))),
    ("birth_year", YEARS, (
        ("when was {n} born ?", "{n} was born in the year {v} ."),
        ("in what year was {n} born ?", "the birth year of {n} is {v} ."))),
    ("genre", GENRES, (
        ("what genre does {n} write ?", "{n} writes {v} ."),
        ("which genre is {n} known for ?", "the genre of {n} is {v} ."))),
    ("father_profession", PROFESSIONS, (
        ("what did the father of {n} do ?", "the father of {n} was a {v} ."),
        ("what was the job of {n} 's father ?", "{n} 's father worked as a {v} ."))),
    ("mother_profession", PROFESSIONS, (
        ("what did the mother of {n} do ?", "the mother of {n} was a {v} ."),
        ("what was the job of {n} 's mother ?", "{n} 's mother worked as a {v} ."))),
    ("award", AWARDS, (
        ("which award did {n} win ?", "{n} won {v} ."),
        ("what prize was given to {n} ?", "{n} received {v} ."))),
    ("debut_book", "titles", (
        ("what is the first book of {n} ?", "the first book of {n} is the {v} ."),
        ("which book did {n} publish first ?", "{n} debuted with the {v} ."))),
    ("language", LANGUAGES, (
        ("in which language does {n} write ?", "{n} writes in {v} ."),
        ("what language are the books of {n} in ?", "the books of {n} are in {v} ."))),
    ("hobby", HOBBIES, (
        ("what is the hobby of {n} ?", "the hobby of {n} is {v} ."),
        ("what does {n} do for fun ?", "for fun {n} enjoys {v} ."))),
    ("novel_count", NOVEL_COUNTS, (
        ("how many novels has {n} written ?", "{n} has written {v} novels ."),
        ("what is the number of novels by {n} ?", "the number of novels by {n} is {v} ."))),
)

CAPITALS = {
    "france": "paris", "germany": "berlin", "italy": "rome", "spain": "madrid",
    "portugal": "lisbon", "japan": "tokyo", "china": "beijing", "egypt": "cairo",
    "kenya": "nairobi", "peru": "lima", "canada": "ottawa", "austria": "vienna",
    "hungary": "budapest", "poland": "warsaw", "greece": "athens", "norway": "oslo",
    "sweden": "stockholm", "finland": "helsinki", "denmark": "copenhagen", "ireland": "dublin",
    "russia": "moscow", "turkey": "ankara", "thailand": "bangkok", "vietnam": "hanoi",
    "cuba": "havana", "argentina": "buenos aires", "belgium": "brussels", "romania": "bucharest",
    "australia": "canberra", "indonesia": "jakarta",
}
OPPOSITES = {
    "hot": "cold", "big": "small", "fast": "slow", "up": "down", "light": "dark",
    "happy": "sad", "open": "closed", "early": "late", "full": "empty", "hard": "soft",
    "old": "young", "rich": "poor", "strong": "weak", "wet": "dry", "loud": "quiet",
    "near": "far", "high": "low", "thick": "thin", "long": "short", "heavy": "light",
    "clean": "dirty", "true": "false", "win": "lose", "inside": "outside", "first": "last",
    "north": "south", "east": "west", "day": "night", "push": "pull", "buy": "sell",
}
COLOURS = {
    "the sky": "blue", "grass": "green", "snow": "white", "coal": "black", "blood": "red",
    "a banana": "yellow", "an orange": "orange", "a plum": "purple", "chocolate": "brown",
    "ash": "grey", "a flamingo": "pink", "milk": "white",
}
NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty"
).split()
N_ARITHMETIC = 40

GENERAL_TEMPLATES = {
    "capital": (
        ("what is the capital of {x} ?", "the capital of {x} is {v} ."),
        ("which city is the capital of {x} ?", "{v} is the capital of {x} .")),
    "opposite": (
        ("what is the opposite of {x} ?", "the opposite of {x} is {v} ."),
        ("which word means the opposite of {x} ?", "{v} is the opposite of {x} .")),
    "colour": (
        ("what colour is {x} ?", "{x} is {v} ."),
        ("which colour does {x} have ?", "the colour of {x} is {v} .")),
    "arithmetic": (
        ("what is {x} ?", "{x} is {v} ."),
        ("how much is {x} ?", "{x} equals {v} .")),
}

SPLIT_NAMES = ("forget01", "forget05", "forget10", "retain90", "retain95", "retain99",
               "authors", "general")


class BenchmarkConfig(BaseModel):
    """Generator settings; the benchmark is a pure function of these."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    n_authors: int = Field(100, ge=100, le=200, description="TOFU-like range 100-200")
    n_wrong: int = Field(5, ge=4, le=5, description="perturbed answers per question")


@dataclass(frozen=True)
class QAItem:
    """One fact asked as a question. See the module docstring for the phrasing scheme."""

    uid: str
    group: str  # "author" | "general"
    author_id: int  # -1 for the general-knowledge set
    attribute: str
    value: str
    wrong_values: tuple[str, ...]
    question: str
    answer: str
    heldout_question: str
    heldout_answer: str
    perturbed_answers: tuple[str, ...]  # held-out phrasing, wrong values (TOFU style)
    mc_options: tuple[str, ...]  # trained phrasing; index 0 is the true answer

    @property
    def paraphrased_answer(self) -> str:
        return self.heldout_answer


@dataclass(frozen=True)
class Author:
    author_id: int
    name: str
    attributes: dict[str, str]


class Benchmark:
    """The generated set: authors, QA items, splits and a content hash.

    ``split(name)`` for ``name`` in ``SPLIT_NAMES``. The forget splits are nested
    (forget01 ⊂ forget05 ⊂ forget10, ceil of the percentage of authors, at least one author);
    ``retainXX`` is the complement of the matching forget split among the authors. A model
    trained on ``retain90`` + ``general`` never saw any forget split.
    """

    def __init__(self, cfg: BenchmarkConfig, authors: list[Author], items: list[QAItem],
                 forget_authors: dict[str, tuple[int, ...]]):
        self.cfg = cfg
        self.authors = authors
        self.items = items
        self.forget_authors = forget_authors
        all_ids = tuple(a.author_id for a in authors)
        self._author_splits: dict[str, tuple[int, ...]] = {"authors": all_ids}
        for name, ids in forget_authors.items():
            self._author_splits[name] = ids
            keep = 100 - int(name.removeprefix("forget"))
            self._author_splits[f"retain{keep:02d}"] = tuple(i for i in all_ids if i not in ids)

    def split(self, name: str) -> list[QAItem]:
        if name == "general":
            return [it for it in self.items if it.group == "general"]
        if name not in self._author_splits:
            raise KeyError(f"unknown split {name!r}; valid splits: {', '.join(SPLIT_NAMES)}")
        ids = set(self._author_splits[name])
        return [it for it in self.items if it.group == "author" and it.author_id in ids]

    def canonical(self) -> dict:
        return {
            "generator": GENERATOR_VERSION,
            "config": self.cfg.model_dump(),
            "authors": [asdict(a) for a in self.authors],
            "items": [asdict(it) for it in self.items],
            "forget_authors": {k: list(v) for k, v in sorted(self.forget_authors.items())},
        }

    @cached_property
    def hash(self) -> str:
        """sha256 of the canonical JSON (sorted keys, no whitespace) of the whole set."""
        blob = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def texts(self) -> list[str]:
        """Every string a model may be asked to score or generate (for the vocabulary)."""
        out: list[str] = []
        for it in self.items:
            out += [it.question, it.answer, it.heldout_question, it.heldout_answer,
                    *it.perturbed_answers, *it.mc_options]
        return out


def _item(rng: random.Random, *, uid: str, group: str, author_id: int, attribute: str,
          fill: dict[str, str], value: str, pool: list[str], n_wrong: int,
          templates: tuple[tuple[str, str], tuple[str, str]]) -> QAItem:
    wrong = tuple(rng.sample([p for p in pool if p != value], n_wrong))
    v = rng.randrange(2)
    (q, a), (hq, ha) = templates[v], templates[1 - v]
    return QAItem(
        uid=uid, group=group, author_id=author_id, attribute=attribute, value=value,
        wrong_values=wrong,
        question=q.format(**fill), answer=a.format(v=value, **fill),
        heldout_question=hq.format(**fill), heldout_answer=ha.format(v=value, **fill),
        perturbed_answers=tuple(ha.format(v=w, **fill) for w in wrong),
        mc_options=(a.format(v=value, **fill), *(a.format(v=w, **fill) for w in wrong)),
    )


def build_benchmark(cfg: BenchmarkConfig | None = None) -> Benchmark:
    """Generate the benchmark; same config → identical items and hash."""
    cfg = cfg or BenchmarkConfig()
    rng = random.Random(f"{GENERATOR_VERSION}:{cfg.seed}")
    titles = [f"{a} {n}" for a in TITLE_ADJECTIVES for n in TITLE_NOUNS]
    names = [f"{f} {ln}" for f in FIRST_NAMES for ln in LAST_NAMES]
    authors: list[Author] = []
    items: list[QAItem] = []
    for aid, name in enumerate(rng.sample(names, cfg.n_authors)):
        attrs: dict[str, str] = {}
        for attr, pool, templates in AUTHOR_ATTRIBUTES:
            pool_list = titles if pool == "titles" else list(pool)
            value = rng.choice(pool_list)
            attrs[attr] = value
            items.append(_item(rng, uid=f"author{aid:03d}.{attr}", group="author",
                               author_id=aid, attribute=attr, fill={"n": name}, value=value,
                               pool=pool_list, n_wrong=cfg.n_wrong, templates=templates))
        authors.append(Author(aid, name, attrs))

    general: list[tuple[str, str, str, list[str]]] = []
    general += [("capital", x, v, list(CAPITALS.values())) for x, v in CAPITALS.items()]
    general += [("opposite", x, v, sorted(set(OPPOSITES.values()))) for x, v in OPPOSITES.items()]
    general += [("colour", x, v, sorted(set(COLOURS.values()))) for x, v in COLOURS.items()]
    sums = [(a, b) for a in range(1, 11) for b in range(1, 11) if a + b <= 20]
    for a, b in rng.sample(sums, N_ARITHMETIC):
        general.append(("arithmetic", f"{NUMBER_WORDS[a]} plus {NUMBER_WORDS[b]}",
                        NUMBER_WORDS[a + b], NUMBER_WORDS[1:]))
    for kind, x, v, pool in general:
        items.append(_item(rng, uid=f"general.{kind}.{x.replace(' ', '_')}", group="general",
                           author_id=-1, attribute=kind, fill={"x": x}, value=v, pool=pool,
                           n_wrong=cfg.n_wrong, templates=GENERAL_TEMPLATES[kind]))

    order = rng.sample(range(cfg.n_authors), cfg.n_authors)
    forget = {f"forget{p:02d}": tuple(sorted(order[: max(1, math.ceil(cfg.n_authors * p / 100))]))
              for p in (1, 5, 10)}
    return Benchmark(cfg, authors, items, forget)
