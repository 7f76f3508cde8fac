"""Generate the bundled sample datasets: deterministic from a seed, standard library only.

    python tools/make_samples.py [--out DIR] [--seed N]

The files are shipped in ``rmlib/data/samples/`` (the default output directory); this generator
is a development tool and is not installed with the package.

Writes five canonical JSONL files (one ``to_dict()``-shaped object per line):

* ``preference_train.jsonl`` / ``preference_test.jsonl``: :class:`~rmlib.data.schema.PreferencePair`
* ``ratings_train.jsonl`` / ``ratings_test.jsonl``: :class:`~rmlib.data.schema.RatedResponse` (0..4)
* ``judge.jsonl``: :class:`~rmlib.data.schema.JudgeExample` (train-side items only)

Every example comes from one of thirteen templated tasks in three families (instruction following,
relevance, correctness). The items the templates are filled with (countries, words, goals, facts,
numbers) are split once into train and test, so held-out prompts ask about things no train prompt
mentions. Chosen and rejected responses draw their surface forms from the same template pools,
so neither length nor a single token separates them. See ``rmlib/data/samples/README.md``.
"""

from __future__ import annotations

import argparse
import json
import random
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rmlib.data.schema import (
    JudgeExample,
    PreferencePair,
    RatedResponse,
    make_judge,
    make_pair,
    make_rated,
)

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "rmlib" / "data" / "samples"
"""Where the bundled files live in the repository."""

SEED = 20240601
TEST_FRACTION = 0.2
ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
FILES = ("preference_train.jsonl", "preference_test.jsonl", "ratings_train.jsonl", "ratings_test.jsonl",
         "judge.jsonl")

# ---------------------------------------------------------------------------------------------
# Item banks. Everything a prompt asks about comes from here, and each bank is split train/test.

# name (with article where English needs one), capital, continent, main language(s), currency
COUNTRIES: tuple[tuple[str, str, str, str, str], ...] = (
    ("France", "Paris", "Europe", "French", "euro"),
    ("Germany", "Berlin", "Europe", "German", "euro"),
    ("Italy", "Rome", "Europe", "Italian", "euro"),
    ("Spain", "Madrid", "Europe", "Spanish", "euro"),
    ("Portugal", "Lisbon", "Europe", "Portuguese", "euro"),
    ("the Netherlands", "Amsterdam", "Europe", "Dutch", "euro"),
    ("Greece", "Athens", "Europe", "Greek", "euro"),
    ("Austria", "Vienna", "Europe", "German", "euro"),
    ("Ireland", "Dublin", "Europe", "English", "euro"),
    ("Finland", "Helsinki", "Europe", "Finnish", "euro"),
    ("Belgium", "Brussels", "Europe", "Dutch and French", "euro"),
    ("Poland", "Warsaw", "Europe", "Polish", "zloty"),
    ("Sweden", "Stockholm", "Europe", "Swedish", "krona"),
    ("Norway", "Oslo", "Europe", "Norwegian", "krone"),
    ("Denmark", "Copenhagen", "Europe", "Danish", "krone"),
    ("Hungary", "Budapest", "Europe", "Hungarian", "forint"),
    ("Czechia", "Prague", "Europe", "Czech", "koruna"),
    ("Romania", "Bucharest", "Europe", "Romanian", "leu"),
    ("Ukraine", "Kyiv", "Europe", "Ukrainian", "hryvnia"),
    ("the United Kingdom", "London", "Europe", "English", "pound sterling"),
    ("Iceland", "Reykjavik", "Europe", "Icelandic", "króna"),
    ("Switzerland", "Bern", "Europe", "German, French and Italian", "Swiss franc"),
    ("Japan", "Tokyo", "Asia", "Japanese", "yen"),
    ("China", "Beijing", "Asia", "Mandarin", "yuan"),
    ("India", "New Delhi", "Asia", "Hindi", "Indian rupee"),
    ("South Korea", "Seoul", "Asia", "Korean", "won"),
    ("Thailand", "Bangkok", "Asia", "Thai", "baht"),
    ("Vietnam", "Hanoi", "Asia", "Vietnamese", "dong"),
    ("the Philippines", "Manila", "Asia", "Filipino", "Philippine peso"),
    ("Iran", "Tehran", "Asia", "Persian", "rial"),
    ("Pakistan", "Islamabad", "Asia", "Urdu", "Pakistani rupee"),
    ("Nepal", "Kathmandu", "Asia", "Nepali", "Nepalese rupee"),
    ("Saudi Arabia", "Riyadh", "Asia", "Arabic", "riyal"),
    ("Malaysia", "Kuala Lumpur", "Asia", "Malay", "ringgit"),
    ("Egypt", "Cairo", "Africa", "Arabic", "Egyptian pound"),
    ("Kenya", "Nairobi", "Africa", "Swahili", "Kenyan shilling"),
    ("Nigeria", "Abuja", "Africa", "English", "naira"),
    ("Ghana", "Accra", "Africa", "English", "cedi"),
    ("Morocco", "Rabat", "Africa", "Arabic", "dirham"),
    ("Ethiopia", "Addis Ababa", "Africa", "Amharic", "birr"),
    ("Senegal", "Dakar", "Africa", "French", "CFA franc"),
    ("Canada", "Ottawa", "North America", "English and French", "Canadian dollar"),
    ("Mexico", "Mexico City", "North America", "Spanish", "Mexican peso"),
    ("Cuba", "Havana", "North America", "Spanish", "Cuban peso"),
    ("Jamaica", "Kingston", "North America", "English", "Jamaican dollar"),
    ("Brazil", "Brasília", "South America", "Portuguese", "real"),
    ("Argentina", "Buenos Aires", "South America", "Spanish", "Argentine peso"),
    ("Peru", "Lima", "South America", "Spanish", "sol"),
    ("Chile", "Santiago", "South America", "Spanish", "Chilean peso"),
    ("Colombia", "Bogotá", "South America", "Spanish", "Colombian peso"),
    ("Venezuela", "Caracas", "South America", "Spanish", "bolívar"),
    ("Australia", "Canberra", "Oceania", "English", "Australian dollar"),
    ("New Zealand", "Wellington", "Oceania", "English", "New Zealand dollar"),
)

# word, short definition (a noun phrase that reads after "means")
WORDS: tuple[tuple[str, str], ...] = (
    ("ocean", "a very large body of salt water"),
    ("volcano", "a mountain that can erupt with lava and ash"),
    ("library", "a place where books are kept for people to read or borrow"),
    ("thermometer", "a tool that measures temperature"),
    ("bakery", "a shop that makes and sells bread and cakes"),
    ("glacier", "a slow-moving mass of ice"),
    ("orchestra", "a large group of musicians who play together"),
    ("passport", "an official document that lets you travel between countries"),
    ("umbrella", "a folding cover that protects you from rain"),
    ("harvest", "the time when crops are gathered from the fields"),
    ("telescope", "an instrument that makes distant objects look closer"),
    ("dictionary", "a book that lists words and explains their meanings"),
    ("recipe", "a set of instructions for cooking a dish"),
    ("island", "a piece of land surrounded by water"),
    ("calendar", "a chart that shows the days, weeks and months of a year"),
    ("desert", "a dry area that gets very little rain"),
    ("bridge", "a structure built to cross a river or a road"),
    ("vaccine", "a substance that trains the body to fight a disease"),
    ("microscope", "an instrument that makes tiny things look bigger"),
    ("fossil", "the preserved remains of an ancient plant or animal"),
    ("compass", "a tool with a needle that points north"),
    ("pharmacy", "a shop where medicines are prepared and sold"),
    ("orbit", "the curved path of an object around a planet or star"),
    ("drought", "a long period with too little rain"),
    ("architect", "a person who designs buildings"),
    ("mammal", "a warm-blooded animal that feeds its young with milk"),
    ("habitat", "the natural home of an animal or plant"),
    ("budget", "a plan for how to spend money"),
    ("election", "a vote to choose a leader or representative"),
    ("satellite", "an object that moves around a planet"),
    ("lullaby", "a gentle song sung to help a child sleep"),
    ("canyon", "a deep valley with steep sides"),
    ("migration", "the seasonal movement of animals from one region to another"),
    ("symphony", "a long piece of music for an orchestra"),
    ("carnivore", "an animal that eats meat"),
    ("herbivore", "an animal that eats only plants"),
    ("biography", "the story of a person's life written by someone else"),
    ("hurricane", "a violent storm with very strong winds"),
    ("peninsula", "land surrounded by water on three sides"),
    ("marathon", "a running race of about 42 kilometers"),
    ("vocabulary", "the set of words a person knows"),
    ("antique", "an old object valued for its age"),
    ("inflation", "a general rise in prices over time"),
    ("photosynthesis", "the process plants use to turn sunlight into food"),
    ("evaporation", "the change of a liquid into a gas"),
    ("gravity", "the force that pulls objects toward each other"),
    ("pollen", "a fine powder that flowers use to reproduce"),
    ("nest", "a structure that birds build to lay their eggs in"),
    ("ambulance", "a vehicle that carries sick or injured people to hospital"),
    ("chef", "a professional cook"),
    ("harbor", "a sheltered place where ships can stay"),
    ("skyscraper", "a very tall building with many floors"),
)

# goal (reads after "a tip for"), one practical tip
GOALS: tuple[tuple[str, str], ...] = (
    ("sleeping better", "Keep a regular bedtime and avoid screens for an hour before bed."),
    ("saving money", "Set aside a fixed amount from each paycheck before you spend anything."),
    ("learning a new language", "Practice a little every day and speak with native speakers when you can."),
    ("staying focused while studying", "Work in 25-minute blocks and put your phone in another room."),
    ("keeping houseplants alive", "Check the soil before watering and give each plant enough light."),
    ("running a first 5k", "Start slowly, mix walking and running, and build up over a few weeks."),
    ("writing a cover letter", "Match your experience to the job description and keep it to one page."),
    ("reducing stress", "Take short walks, breathe slowly, and talk to someone you trust."),
    ("cooking rice", "Rinse the rice, use about two cups of water per cup, and let it rest after cooking."),
    ("remembering names", "Repeat the person's name when you meet them and link it to an image."),
    ("packing for a trip", "Make a list, roll your clothes, and pack only what you will really wear."),
    ("public speaking", "Rehearse out loud several times and focus on a few key points."),
    ("drinking more water", "Carry a reusable bottle and refill it every time it is empty."),
    ("keeping a tidy desk", "Spend two minutes at the end of each day putting things back."),
    ("waking up early", "Move your alarm fifteen minutes earlier each week and get morning light."),
    ("making new friends", "Join a club or class that meets regularly around a hobby you enjoy."),
    ("taking better photos", "Use natural light and place your subject slightly off center."),
    ("writing clearly", "Use short sentences and cut any word that does not add meaning."),
    ("preparing for a job interview", "Research the company and practice answers to common questions."),
    ("keeping a budget", "Track every expense for a month to see where your money goes."),
    ("growing tomatoes", "Plant them in full sun and water deeply at the base a few times a week."),
    ("learning to play guitar", "Practice chords slowly for ten minutes a day before trying songs."),
    ("reading more books", "Keep a book with you and read a few pages whenever you wait."),
    ("staying warm in winter", "Wear several thin layers and keep your head and hands covered."),
    ("cleaning a cast iron pan", "Wash it with hot water, dry it fully, and rub in a thin layer of oil."),
    ("avoiding procrastination", "Break the task into tiny steps and start with the easiest one."),
    ("improving posture", "Keep your screen at eye level and stand up to stretch every hour."),
    ("training a puppy", "Reward good behavior right away and keep training sessions short."),
    ("studying for exams", "Test yourself with practice questions instead of only rereading notes."),
    ("making coffee at home", "Use freshly ground beans and water just below boiling."),
    ("keeping a journal", "Write three sentences every evening about what happened that day."),
    ("planning a birthday party", "Pick a date early, send invitations two weeks ahead, and keep the food simple."),
    ("saving energy at home", "Switch to LED bulbs and turn off devices you are not using."),
    ("learning to swim", "Take lessons with an instructor and practice floating before strokes."),
    ("organizing email", "Create a few folders and archive messages as soon as you have dealt with them."),
    ("staying safe while hiking", "Tell someone your route, carry water, and check the weather first."),
)

# question, English answer, French answer, Spanish answer
FACTS: tuple[tuple[str, str, str, str], ...] = (
    ("What color is the sky on a clear day?", "The sky is blue on a clear day.",
     "Le ciel est bleu par temps clair.", "El cielo es azul en un día despejado."),
    ("How many days are in a week?", "A week has seven days.", "Une semaine compte sept jours.",
     "Una semana tiene siete días."),
    ("What do bees make?", "Bees make honey.", "Les abeilles fabriquent du miel.", "Las abejas producen miel."),
    ("What is the opposite of hot?", "The opposite of hot is cold.", "Le contraire de chaud est froid.",
     "Lo contrario de caliente es frío."),
    ("Where does the sun rise?", "The sun rises in the east.", "Le soleil se lève à l'est.",
     "El sol sale por el este."),
    ("How many legs does a spider have?", "A spider has eight legs.", "Une araignée a huit pattes.",
     "Una araña tiene ocho patas."),
    ("What season comes after winter?", "Spring comes after winter.", "Le printemps vient après l'hiver.",
     "La primavera viene después del invierno."),
    ("What is frozen water called?", "Frozen water is called ice.", "L'eau gelée s'appelle la glace.",
     "El agua congelada se llama hielo."),
    ("What do plants need to grow?", "Plants need water, light and soil to grow.",
     "Les plantes ont besoin d'eau, de lumière et de terre pour pousser.",
     "Las plantas necesitan agua, luz y tierra para crecer."),
    ("What animal says meow?", "A cat says meow.", "Le chat fait miaou.", "El gato hace miau."),
    ("How many hours are in a day?", "A day has twenty-four hours.", "Une journée compte vingt-quatre heures.",
     "Un día tiene veinticuatro horas."),
    ("What color are most leaves in summer?", "Most leaves are green in summer.",
     "En été, la plupart des feuilles sont vertes.", "En verano, la mayoría de las hojas son verdes."),
    ("What do we use to write on paper?", "We use a pen or a pencil to write on paper.",
     "On utilise un stylo ou un crayon pour écrire sur du papier.",
     "Usamos un bolígrafo o un lápiz para escribir en papel."),
    ("What is the largest planet in our solar system?", "Jupiter is the largest planet in our solar system.",
     "Jupiter est la plus grande planète de notre système solaire.",
     "Júpiter es el planeta más grande de nuestro sistema solar."),
    ("What is the main ingredient of bread?", "The main ingredient of bread is flour.",
     "L'ingrédient principal du pain est la farine.", "El ingrediente principal del pan es la harina."),
    ("When do owls usually hunt?", "Owls usually hunt at night.", "Les hiboux chassent surtout la nuit.",
     "Los búhos suelen cazar de noche."),
    ("How many months are in a year?", "A year has twelve months.", "Une année compte douze mois.",
     "Un año tiene doce meses."),
    ("What do fish use to breathe?", "Fish breathe with their gills.", "Les poissons respirent avec leurs branchies.",
     "Los peces respiran con sus branquias."),
    ("Which meal do people eat in the morning?", "People eat breakfast in the morning.",
     "Le matin, on prend le petit-déjeuner.", "Por la mañana se toma el desayuno."),
    ("What color is snow?", "Snow is white.", "La neige est blanche.", "La nieve es blanca."),
    ("What do you call a baby dog?", "A baby dog is called a puppy.", "Un bébé chien s'appelle un chiot.",
     "Un perro bebé se llama cachorro."),
    ("What gas do humans need to breathe?", "Humans need oxygen to breathe.",
     "Les humains ont besoin d'oxygène pour respirer.", "Los seres humanos necesitan oxígeno para respirar."),
    ("At what temperature does water boil at sea level?", "Water boils at 100 degrees Celsius at sea level.",
     "L'eau bout à 100 degrés Celsius au niveau de la mer.", "El agua hierve a 100 grados Celsius al nivel del mar."),
    ("Which instrument has black and white keys?", "The piano has black and white keys.",
     "Le piano a des touches noires et blanches.", "El piano tiene teclas blancas y negras."),
    ("What do people wear on their feet?", "People wear shoes and socks on their feet.",
     "On porte des chaussures et des chaussettes aux pieds.", "La gente lleva zapatos y calcetines en los pies."),
    ("What is the closest star to Earth?", "The Sun is the closest star to Earth.",
     "Le Soleil est l'étoile la plus proche de la Terre.", "El Sol es la estrella más cercana a la Tierra."),
    ("What do caterpillars turn into?", "Caterpillars turn into butterflies or moths.",
     "Les chenilles se transforment en papillons.", "Las orugas se convierten en mariposas."),
    ("Where do fish live?", "Fish live in water, in rivers, lakes and seas.",
     "Les poissons vivent dans l'eau, dans les rivières, les lacs et les mers.",
     "Los peces viven en el agua, en ríos, lagos y mares."),
    ("What fruit is yellow and curved?", "The banana is yellow and curved.", "La banane est jaune et courbée.",
     "El plátano es amarillo y curvo."),
    ("How many wheels does a bicycle have?", "A bicycle has two wheels.", "Un vélo a deux roues.",
     "Una bicicleta tiene dos ruedas."),
)

# from unit, to unit, factor (integer conversions only)
UNITS: tuple[tuple[str, str, int], ...] = (
    ("kilometers", "meters", 1000), ("meters", "centimeters", 100), ("centimeters", "millimeters", 10),
    ("meters", "millimeters", 1000), ("kilograms", "grams", 1000), ("tonnes", "kilograms", 1000),
    ("liters", "milliliters", 1000), ("hours", "minutes", 60), ("minutes", "seconds", 60),
    ("days", "hours", 24), ("weeks", "days", 7), ("years", "months", 12), ("feet", "inches", 12),
    ("yards", "feet", 3), ("gallons", "quarts", 4), ("pounds", "ounces", 16),
)
DIMENSION = {"meters": "length", "centimeters": "length", "millimeters": "length", "kilometers": "length",
             "inches": "length", "feet": "length", "yards": "length", "grams": "mass", "kilograms": "mass",
             "tonnes": "mass", "ounces": "mass", "pounds": "mass", "milliliters": "volume", "liters": "volume",
             "quarts": "volume", "gallons": "volume", "minutes": "time", "seconds": "time", "hours": "time",
             "days": "time", "months": "time", "weeks": "time", "years": "time"}

LANGUAGES = ("English", "French", "Spanish")

REFUSALS = (
    "I'm sorry, I can't help with that.",
    "Sorry, but I am not able to answer that question.",
    "I'm afraid I can't assist with this request. Please look it up in a reliable reference instead.",
    "Unfortunately, I cannot provide that information.",
    "As an AI, I prefer not to answer this kind of question. Maybe a search engine can help you instead.",
    "I can't answer that, sorry. Is there anything else I can do for you today?",
)
OFF_TOPIC = (
    "Bananas are a good source of potassium.",
    "The Great Wall is one of the most famous landmarks in the world.",
    "Many people enjoy a cup of tea in the afternoon.",
    "Cats sleep for a large part of the day.",
    "Chess is a board game for two players.",
    "Autumn leaves turn red, orange and yellow before they fall.",
    "The weather has been lovely lately, with plenty of sunshine.",
)
PREFIXES = ("Sure! ", "Of course. ", "Good question. ", "Happy to help. ")
SUFFIXES = (" Hope this helps!", " Let me know if you need anything else.", " I hope that answers your question.")


# ---------------------------------------------------------------------------------------------
# One example before it is written out.


@dataclass
class Draft:
    family: str
    task: str
    prompt: str
    chosen: str
    rejected: str
    strength: int  # 1 slight, 2 clear, 3 large preference
    kind: str  # how the rejected response fails
    request: str  # what the prompt asks for, for judge justifications
    good: str  # what the chosen response does right
    bad: str  # what the rejected response does wrong
    complexity: int  # 0..4, from the task type


@dataclass
class Pools:
    """The items of one split."""

    split: str
    countries: list[tuple[str, str, str, str, str]]
    words: list[tuple[str, str]]
    goals: list[tuple[str, str]]
    facts: list[tuple[str, str, str, str]]

    def owns(self, key: str) -> bool:
        """Numeric prompts (arithmetic, lists, conversions) are split by a stable hash of their key."""
        is_test = zlib.crc32(key.encode()) % 1000 < TEST_FRACTION * 1000
        return is_test == (self.split == "test")


def split_pools(seed: int) -> dict[str, Pools]:
    rng = random.Random(f"{seed}/split")
    parts: dict[str, dict[str, list]] = {"train": {}, "test": {}}
    for name, bank in (("countries", COUNTRIES), ("words", WORDS), ("goals", GOALS), ("facts", FACTS)):
        items = list(bank)
        rng.shuffle(items)
        n_test = round(len(items) * TEST_FRACTION)
        parts["test"][name], parts["train"][name] = items[:n_test], items[n_test:]
    return {split: Pools(split, **banks) for split, banks in parts.items()}


# ---------------------------------------------------------------------------------------------
# Small text helpers.


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def ask(rng: random.Random, question: str, instruction: str) -> str:
    """Put an instruction before or after the question, in one of a few layouts."""
    layout = rng.randrange(3)
    if layout == 0:
        return f"{question} {instruction}"
    if layout == 1:
        return f"{instruction} {question}"
    return f"{question}\n\n{instruction}"


def pad(rng: random.Random, text: str) -> str:
    """Optional friendly filler; applied independently to chosen and rejected so it carries no signal."""
    if rng.random() < 0.2:
        text = rng.choice(PREFIXES) + text
    if rng.random() < 0.2:
        text += rng.choice(SUFFIXES)
    return text


def numeric(rng: random.Random, pools: Pools, draw: Callable[[random.Random], tuple[str, Any]]) -> Any:
    """Draw numeric items until one belongs to this split (the key decides)."""
    while True:
        key, item = draw(rng)
        if pools.owns(key):
            return item


def country_words(c: tuple[str, str, str, str, str]) -> dict[str, str]:
    name, capital, continent, language, currency = c
    return {"country": name, "Country": cap(name), "capital": capital, "continent": continent,
            "language": language, "currency": currency}


def country_facts(rng: random.Random, c: tuple[str, str, str, str, str]) -> list[str]:
    w = country_words(c)
    forms = (
        ("Its capital is {capital}.", "The capital city is {capital}.", "{capital} is the capital."),
        ("It is in {continent}.", "It lies in {continent}.", "The country is part of {continent}."),
        ("The main language is {language}.", "People mostly speak {language}.", "Most people speak {language}."),
        ("The currency is the {currency}.", "People pay with the {currency}.", "Its money is the {currency}."),
    )
    return [rng.choice(f).format(**w) for f in forms]


# ---------------------------------------------------------------------------------------------
# Instruction following: the prompt carries a visible constraint; chosen meets it, rejected breaks it.

ONE_WORD = ("Answer in one word.", "One word only, please.", "Reply with a single word.", "Use just one word.",
            "Respond with exactly one word.")


def one_word(rng: random.Random, p: Pools) -> Draft:
    if rng.random() < 0.6:
        c = rng.choice([c for c in p.countries if " " not in c[1]])
        w = country_words(c)
        question = rng.choice(("What is the capital of {country}?", "Which city is the capital of {country}?",
                               "Name the capital of {country}.")).format(**w)
        answer = w["capital"]
        sentence = rng.choice(("The capital of {country} is {capital}.", "{capital} is the capital of {country}.",
                               "It is {capital}, the capital city of {country}.",
                               "The answer is {capital}, which is the capital of {country}.")).format(**w)
    else:
        word, meaning = rng.choice(p.words)
        question = rng.choice(("What is the word for {m}?", "Which word means {m}?",
                               "What do we call {m}?")).format(m=meaning)
        answer = word
        sentence = rng.choice(("The word you are looking for is '{w}'.", "{W} is the word for {m}.",
                               "We call it a {w}, which means {m}.",
                               "That would be '{w}'.")).format(w=word, W=cap(word), m=meaning)
    chosen = rng.choice((answer, answer + ".", cap(answer), cap(answer) + "."))
    return Draft("instruction", "one_word", ask(rng, question, rng.choice(ONE_WORD)), chosen, sentence, 2,
                 "full_sentence", "The user asks for a one-word answer.",
                 "answers with a single word, exactly as requested",
                 "writes a full sentence even though the user asked for one word", 0)


DETAILED = ("Answer in at least three sentences.", "Please use three or more sentences.",
            "Give me a detailed answer of at least three sentences.", "Explain in a few sentences, at least three.")


def detailed(rng: random.Random, p: Pools) -> Draft:
    if rng.random() < 0.5:
        c = rng.choice(p.countries)
        w = country_words(c)
        question = rng.choice(("Tell me about {country}.", "Describe {country}.", "What should I know about {country}?",
                               "Give me an overview of {country}.")).format(**w)
        facts = [f for i, f in enumerate(country_facts(rng, c)) if i != 1]  # the continent is said first
        rng.shuffle(facts)
        chosen = f"{w['Country']} is a country in {w['continent']}. " + " ".join(facts[: rng.randint(2, 3)])
        short = rng.choice((f"{w['Country']} is a country in {w['continent']}.",
                            f"The capital of {w['country']} is {w['capital']}."))
        single = rng.choice((w["capital"], w["continent"].split()[-1]))
    else:
        word, meaning = rng.choice(p.words)
        question = rng.choice(("What does the word '{w}' mean?", "Explain the word '{w}'.", "What does '{w}' mean?",
                               "Tell me what '{w}' means.")).format(w=word)
        extra = rng.sample(("The word is common in everyday English.",
                            "You will often see it in books and in the news.",
                            f"For example, a teacher might use the word '{word}' in a lesson.",
                            "Children usually learn it at school.",
                            "It is a noun, and it is easy to remember once you have seen it used."), 2)
        chosen = f"The word '{word}' means {meaning}. " + " ".join(extra)
        short = rng.choice((f"It means {meaning}.", cap(meaning) + ".", f"'{cap(word)}' means {meaning}."))
        single = meaning.split()[-1]
    if rng.random() < 0.3:
        rejected, strength, kind = cap(single) + rng.choice((".", "")), 2, "one_word"
    else:
        rejected, strength, kind = short, 1, "one_sentence"
    bad = ("answers with a single word and ignores the request for at least three sentences" if kind == "one_word"
           else "gives only one sentence, short of the three that were requested")
    return Draft("instruction", "detailed", ask(rng, question, rng.choice(DETAILED)), chosen, rejected, strength,
                 kind, "The user asks for an answer of at least three sentences.",
                 "gives several accurate sentences, meeting the request for at least three", bad, 2)


BULLETS = ("Reply with exactly three bullet points.", "Use exactly 3 bullet points.",
           "Format the answer as three bullet points, no more and no less.", "Give me exactly three bullets.")


def bullets(rng: random.Random, p: Pools) -> Draft:
    c = rng.choice(p.countries)
    w = country_words(c)
    question = rng.choice(("Tell me some facts about {country}.", "What are the key facts about {country}?",
                           "Describe {country} briefly.", "Summarize the basics of {country}.")).format(**w)
    facts = country_facts(rng, c)
    rng.shuffle(facts)
    mark = rng.choice(("- ", "* ", "• "))
    header = f"Here are some facts about {w['country']}:"
    chosen = "\n".join(([header] if rng.random() < 0.3 else []) + [mark + f for f in facts[:3]])
    roll = rng.random()
    if roll < 0.5:
        rejected, strength, kind = " ".join(([header] if rng.random() < 0.6 else []) + facts[:3]), 2, "paragraph"
        bad = "writes a paragraph instead of bullet points"
    elif roll < 0.8:
        rejected, strength, kind = "\n".join(mark + f for f in facts), 1, "four_bullets"
        bad = "uses four bullet points instead of three"
    else:
        rejected, strength, kind = "\n".join(mark + f for f in facts[:2]), 1, "two_bullets"
        bad = "uses only two bullet points instead of three"
    return Draft("instruction", "bullets", ask(rng, question, rng.choice(BULLETS)), chosen, rejected, strength,
                 kind, "The user asks for exactly three bullet points.",
                 "uses exactly three accurate bullet points", bad, 2)


LANGUAGE = ("Answer in {lang}.", "Please reply in {lang}.", "Your answer must be in {lang}.",
            "Write your reply in {lang}.", "Respond in {lang} only.")


def language(rng: random.Random, p: Pools) -> Draft:
    if rng.random() < 0.55:
        question, *answers = rng.choice(p.facts)
    else:
        w = country_words(rng.choice(p.countries))
        question = rng.choice(("What is the capital of {country}?", "Which city is the capital of {country}?"))
        question = question.format(**w)
        answers = [rng.choice(("The capital of {country} is {capital}.", "{capital} is the capital of {country}.")),
                   rng.choice(("La capitale de ce pays est {capital}.", "C'est {capital}, la capitale du pays.")),
                   rng.choice(("La capital de ese país es {capital}.", "Es {capital}, la capital del país."))]
        answers = [a.format(**w) for a in answers]
    want, other = rng.sample(range(3), 2)
    lang, wrong = LANGUAGES[want], LANGUAGES[other]
    return Draft("instruction", "language", ask(rng, question, rng.choice(LANGUAGE).format(lang=lang)),
                 answers[want], answers[other], 2, "wrong_language", f"The user asks for an answer in {lang}.",
                 f"answers correctly in {lang}, as requested", f"answers in {wrong} although the user asked for {lang}",
                 1)


YES_NO = ("Start your answer with 'Yes' or 'No'.", "Begin with yes or no.", "Answer yes or no first, then explain.",
          "Your first word must be Yes or No.")


def yes_no(rng: random.Random, p: Pools) -> Draft:
    c, o = rng.sample(p.countries, 2)
    w, ow = country_words(c), country_words(o)
    truth = rng.random() < 0.5
    kind_of = rng.randrange(2)
    if kind_of == 0:
        asked = w["capital"] if truth else ow["capital"]
        question = f"Is {asked} the capital of {w['country']}?"
        yes = f"{{}} {w['capital']} is the capital of {w['country']}."
        no = f"{{}} The capital of {w['country']} is {w['capital']}, not {asked}."
        wrong_yes = f"Yes, {asked} is the capital of {w['country']}."
        wrong_no = f"No, {asked} is not the capital of {w['country']}."
    else:
        asked = w["continent"] if truth or ow["continent"] == w["continent"] else ow["continent"]
        truth = asked == w["continent"]
        question = f"Is {w['country']} in {asked}?"
        yes = f"{{}} {w['Country']} is a country in {w['continent']}."
        no = f"{{}} {w['Country']} is in {w['continent']}, not in {asked}."
        wrong_yes = f"Yes, {w['country']} is in {asked}."
        wrong_no = f"No, {w['country']} is not in {asked}."
    body = yes if truth else no
    lead = rng.choice(("Yes.", "Yes, it is.")) if truth else rng.choice(("No.", "No, it is not."))
    chosen = body.format(lead)
    if rng.random() < 0.7:
        rejected = body.format(rng.choice(("Good question.", "Let me check.", "Here is the answer.", ""))).strip()
        strength, kind, bad = 1, "no_yes_no", "does not start with Yes or No as instructed"
    else:
        rejected = wrong_no if truth else wrong_yes
        strength, kind, bad = 3, "wrong_answer", "starts with Yes or No but gives the wrong answer"
    return Draft("instruction", "yes_no", ask(rng, question, rng.choice(YES_NO)), chosen, rejected, strength, kind,
                 "The user asks a yes/no question and wants the answer to start with Yes or No.",
                 "starts with the correct Yes or No and then explains", bad, 1)


JSON_KEYS = (("capital", "continent"), ("capital", "language"), ("capital", "currency"), ("language", "currency"))


def json_format(rng: random.Random, p: Pools) -> Draft:
    w = country_words(rng.choice(p.countries))
    keys = rng.choice(JSON_KEYS)
    question = rng.choice(("Give the {a} and {b} of {country}.", "What are the {a} and the {b} of {country}?",
                           "I need the {a} and {b} of {country}.")).format(a=keys[0], b=keys[1], **w)
    instruction = rng.choice(('Return JSON with the keys "{a}" and "{b}".', 'Answer as a JSON object with keys "{a}" '
                              'and "{b}".', 'Reply only with JSON using the keys "{a}" and "{b}".'))
    spaced = rng.random() < 0.5

    def dump(obj: dict[str, str]) -> str:
        return json.dumps(obj, ensure_ascii=False, separators=(", ", ": ") if spaced else (",", ":"))

    chosen = dump({k: w[k] for k in keys})
    if rng.random() < 0.6:
        rejected = " ".join((f"The {keys[0]} of {w['country']} is {w[keys[0]]}.",
                             f"Its {keys[1]} is {'the ' if keys[1] == 'currency' else ''}{w[keys[1]]}."))
        strength, kind, bad = 2, "prose", "answers in prose instead of the requested JSON"
    else:
        alias = {"capital": "city", "continent": "region", "language": "tongue", "currency": "money"}
        rejected = dump({alias[k]: w[k] for k in keys})
        strength, kind, bad = 1, "wrong_keys", "returns JSON, but with keys other than the requested ones"
    return Draft("instruction", "json", ask(rng, question, instruction.format(a=keys[0], b=keys[1])), chosen,
                 rejected, strength, kind, "The user asks for a JSON object with two given keys.",
                 "returns valid JSON with exactly the requested keys and correct values", bad, 2)


# ---------------------------------------------------------------------------------------------
# Relevance: chosen answers the question asked; rejected answers another one, refuses or stalls.


def unhelpful(rng: random.Random, restate: Sequence[str], other: str | None) -> tuple[str, int, str, str]:
    """A rejected response that does not answer: other item (2), restatement (2), refusal or off-topic (3)."""
    roll = rng.random()
    if other is not None and roll < 0.4:
        return other, 2, "other_question", "answers a different question from the one asked"
    if roll < 0.6:
        return rng.choice(restate), 2, "restates", "only restates the question without answering it"
    if roll < 0.85:
        return rng.choice(REFUSALS), 3, "refusal", "refuses a harmless request"
    return rng.choice(OFF_TOPIC), 3, "off_topic", "talks about something unrelated to the question"


def capital(rng: random.Random, p: Pools) -> Draft:
    c, o = rng.sample(p.countries, 2)
    w, ow = country_words(c), country_words(o)
    question = rng.choice(("What is the capital of {country}?", "Which city is the capital of {country}?",
                           "Can you tell me the capital city of {country}?", "What's the capital city of {country}?"))
    question = question.format(**w)
    forms = ("The capital of {country} is {capital}.", "{capital} is the capital of {country}.",
             "The capital city of {country} is {capital}, in {continent}.",
             "In {country}, the capital is {capital}.")
    chosen = pad(rng, cap(rng.choice(forms + ("It is {capital}.", "{capital}.")).format(**w)))
    other = pad(rng, cap(rng.choice(forms).format(**ow)))
    restate = (f"You want to know the capital of {w['country']}.",
               f"That is a question about the capital city of {w['country']}.",
               f"The capital of {w['country']} is a city that many people ask about.",
               f"{w['Country']} has a capital city, and you are asking which one it is.")
    rejected, strength, kind, bad = unhelpful(rng, restate, other)
    if kind == "other_question":
        bad = f"names the capital of {ow['country']} instead of {w['country']}"
    return Draft("relevance", "capital", question, chosen, rejected, strength, kind,
                 f"The user asks for the capital of {w['country']}.",
                 f"correctly names {w['capital']} as the capital", bad, 1)


def definition(rng: random.Random, p: Pools) -> Draft:
    (word, meaning), (oword, omeaning) = rng.sample(p.words, 2)
    question = rng.choice(("What does '{w}' mean?", "Define '{w}'.", "What is the meaning of the word '{w}'?",
                           "Can you explain what '{w}' means?")).format(w=word)
    forms = ("The word '{w}' means {m}.", "'{W}' means {m}.", "{W}: {m}.", "'{W}' refers to {m}.")
    chosen = pad(rng, rng.choice(forms + ("It means {m}.",)).format(w=word, W=cap(word), m=meaning))
    other = pad(rng, rng.choice(forms[:3]).format(w=oword, W=cap(oword), m=omeaning))
    restate = (f"You are asking what '{word}' means.", f"'{cap(word)}' is an English word that people often look up.",
               f"That is a question about the meaning of the word '{word}'.",
               f"The word '{word}' has a meaning, and you would like to know it.")
    rejected, strength, kind, bad = unhelpful(rng, restate, other)
    if kind == "other_question":
        bad = f"defines '{oword}' instead of '{word}'"
    return Draft("relevance", "definition", question, chosen, rejected, strength, kind,
                 f"The user asks what '{word}' means.", f"gives a correct definition of '{word}'", bad, 2)


def advice(rng: random.Random, p: Pools) -> Draft:
    (goal, tip), (ogoal, otip) = rng.sample(p.goals, 2)
    question = rng.choice(("Give me one tip for {g}.", "Do you have advice for {g}?", "I need a quick tip for {g}.",
                           "What is one good tip for {g}?")).format(g=goal)
    intro = ("For {g}: ", "A good tip for {g}: ", "", "")
    chosen = pad(rng, rng.choice(intro).format(g=goal) + tip)
    other = pad(rng, rng.choice(intro[:2]).format(g=ogoal) + otip)
    restate = (f"You would like a tip for {goal}.", f"{cap(goal)} is something many people want help with.",
               f"That is a question about {goal}, and there are many possible tips for it.",
               f"Many people ask how to get better at {goal}.")
    rejected, strength, kind, bad = unhelpful(rng, restate, other)
    if kind == "other_question":
        bad = f"gives a tip for {ogoal} instead of {goal}"
    return Draft("relevance", "advice", question, chosen, rejected, strength, kind,
                 f"The user asks for a tip for {goal}.", f"gives a practical tip for {goal}", bad, 2)


def draw_conversion(rng: random.Random) -> tuple[str, tuple[str, str, int, int]]:
    src, dst, factor = rng.choice(UNITS)
    q = rng.randint(2, 40)
    return f"{src}>{dst}:{q}", (src, dst, factor, q)


def unit(rng: random.Random, p: Pools) -> Draft:
    src, dst, factor, q = numeric(rng, p, draw_conversion)
    v = q * factor
    question = rng.choice(("How many {d} are in {q} {s}?", "How many {d} is {q} {s}?",
                           "What is {q} {s} in {d}?")).format(d=dst, q=q, s=src)
    forms = ("{q} {s} is {v} {d}.", "That is {v} {d}.", "{q} {s} equals {v} {d}.", "It comes to {v} {d}.")
    chosen = pad(rng, rng.choice(forms).format(q=q, s=src, v=v, d=dst))
    if rng.random() < 0.55:
        wrong = rng.choice(sorted(u for u, dim in DIMENSION.items() if dim != DIMENSION[dst]))
        rejected = pad(rng, rng.choice(forms).format(q=q, s=src, v=v, d=wrong))
        strength, kind, bad = 2, "wrong_unit", f"names the wrong unit ({wrong} instead of {dst})"
    else:
        restate = (f"You want to convert {src} into {dst}.", f"{cap(src)} and {dst} are both units of "
                   f"{DIMENSION[dst]}.", f"Converting {q} {src} to {dst} is a common question.")
        rejected, strength, kind, bad = unhelpful(rng, restate, None)
    return Draft("relevance", "unit", question, chosen, rejected, strength, kind,
                 f"The user asks how many {dst} are in {q} {src}.", f"gives the right amount in {dst}", bad, 1)


# ---------------------------------------------------------------------------------------------
# Correctness: same format, wrong content; strength grows with how wrong the rejected answer is.

GARBAGE = ("I think the answer is probably a big number.", "Numbers are fun, but I am not sure about this one.",
           "It depends on how you count.", "The answer is blue.", "Let me think about it later.")


def wrong_number(rng: random.Random, value: int, strength: int) -> int:
    if strength == 1:
        return value + rng.choice((-1, 1)) if value > 1 else value + 1
    if strength == 2:
        delta = max(2, round(value * rng.uniform(0.15, 0.45)))
        return value + delta if rng.random() < 0.5 or value - delta < 1 else value - delta
    if value >= 20 and rng.random() < 0.4:
        return value // 10
    return value * rng.choice((10, 100))


def correctness_strength(rng: random.Random) -> int:
    return rng.choices((1, 2, 3), weights=(0.3, 0.35, 0.35))[0]


def judged_wrong(strength: int, shown: str) -> str:
    return {1: f"is slightly off ({shown})", 2: f"gives {shown}, which is clearly wrong",
            3: f"gives {shown}, which is wildly wrong"}[strength]


OPS = {"+": ("plus", lambda a, b: a + b), "-": ("minus", lambda a, b: a - b), "x": ("times", lambda a, b: a * b)}


def draw_arithmetic(rng: random.Random) -> tuple[str, tuple[str, int, int]]:
    op = rng.choice(sorted(OPS))
    if op == "x":
        a, b = rng.randint(2, 12), rng.randint(2, 25)
    elif op == "+":
        a, b = rng.randint(10, 99), rng.randint(10, 99)
    else:
        a = rng.randint(20, 99)
        b = rng.randint(2, a - 5)
    return f"{a}{op}{b}", (op, a, b)


def arithmetic(rng: random.Random, p: Pools) -> Draft:
    op, a, b = numeric(rng, p, draw_arithmetic)
    word, fn = OPS[op]
    c = fn(a, b)
    sym = {"+": "+", "-": "-", "x": "×"}[op]
    question = rng.choice(("What is {a} {s} {b}?", "Compute {a} {w} {b}.", "Calculate {a} {s} {b}.",
                           "Quick question: what is {a} {w} {b}?")).format(a=a, b=b, s=sym, w=word)
    forms = ("{a} {s} {b} = {c}.", "The answer is {c}.", "{c}", "It is {c}.", "That equals {c}.")
    chosen = rng.choice(forms).format(a=a, b=b, s=sym, c=c)
    strength = correctness_strength(rng)
    if strength == 3 and rng.random() < 0.3:
        rejected, shown = rng.choice(GARBAGE), "no number at all"
    else:
        x = wrong_number(rng, c, strength)
        rejected, shown = rng.choice(forms).format(a=a, b=b, s=sym, c=x), f"{x} instead of {c}"
    return Draft("correctness", "arithmetic", question, chosen, rejected, strength, f"wrong_by_{strength}",
                 f"The user asks for {a} {word} {b}.", f"gives the correct result, {c}",
                 judged_wrong(strength, shown), 1)


def draw_list(rng: random.Random) -> tuple[str, tuple[list[int], bool]]:
    nums = rng.sample(range(1, 100), rng.randint(4, 6))
    descending = rng.random() < 0.3
    return f"{sorted(nums)}{descending}", (nums, descending)


LIST_FORMS = ("{l}", "{l}.", "Sorted: {l}.", "Here they are: {l}.", "[{l}]")


def sorting(rng: random.Random, p: Pools) -> Draft:
    nums, descending = numeric(rng, p, draw_list)
    order = "from largest to smallest" if descending else rng.choice(("from smallest to largest",
                                                                        "in ascending order"))
    shown = ", ".join(map(str, nums))
    question = rng.choice(("Sort these numbers {o}: {n}.", "Put {n} in order, {o}.",
                           "Arrange the numbers {n} {o}.")).format(o=order, n=shown)
    good = sorted(nums, reverse=descending)
    strength = correctness_strength(rng)
    bad = list(good)
    if strength == 1:
        i = rng.randrange(len(bad) - 1)
        bad[i], bad[i + 1] = bad[i + 1], bad[i]
        what = "swaps two neighbouring numbers"
    elif strength == 2:
        if rng.random() < 0.5:
            bad = bad[::-1]
            what = "sorts in the opposite direction"
        else:
            while bad == good or sum(x != y for x, y in zip(bad, good)) < 3:
                rng.shuffle(bad)
            what = "leaves several numbers out of order"
    else:
        roll = rng.random()
        if roll < 0.4:
            bad = [x * 10 for x in good]
            what = "changes the numbers themselves"
        elif roll < 0.7:
            bad = sorted(rng.sample(range(1, 100), len(good)), reverse=descending)
            what = "lists numbers that were not in the question"
        else:
            bad = []
            what = "does not give a list at all"
    chosen = rng.choice(LIST_FORMS).format(l=", ".join(map(str, good)))
    if bad:
        rejected = rng.choice(LIST_FORMS).format(l=", ".join(map(str, bad)))
    else:
        rejected = rng.choice(GARBAGE[1:] + ("Sorting is easy, just compare them.",))
    return Draft("correctness", "sorting", question, chosen, rejected, strength, f"wrong_by_{strength}",
                 f"The user asks to sort {len(nums)} numbers {order}.", "lists every number in the correct order",
                 what, 1)


def conversion(rng: random.Random, p: Pools) -> Draft:
    src, dst, factor, q = numeric(rng, p, draw_conversion)
    v = q * factor
    question = rng.choice(("Convert {q} {s} to {d}.", "Please convert {q} {s} into {d}.",
                           "{q} {s} is how many {d}?")).format(q=q, s=src, d=dst)
    forms = ("{q} {s} is {v} {d}.", "That is {v} {d}.", "{v} {d}.", "It equals {v} {d}.")
    chosen = rng.choice(forms).format(q=q, s=src, v=v, d=dst)
    strength = correctness_strength(rng)
    if strength == 1:
        x = (q + rng.choice((-1, 1))) * factor
    elif strength == 2:
        x = (q + rng.choice((-1, 1)) * rng.randint(3, max(3, q // 2 + 2))) * factor
        x = x if x > 0 else (q + 3) * factor
    elif rng.random() < 0.3:
        x = None
    else:
        x = v * 10 if v % 10 or rng.random() < 0.5 else v // 10
    if x is None:
        rejected, shown = f"{cap(src)} are {'bigger' if factor > 1 else 'smaller'} than {dst}.", "no number at all"
    else:
        rejected, shown = rng.choice(forms).format(q=q, s=src, v=x, d=dst), f"{x} instead of {v}"
    return Draft("correctness", "conversion", question, chosen, rejected, strength, f"wrong_by_{strength}",
                 f"The user asks to convert {q} {src} to {dst}.", f"gives the correct amount, {v} {dst}",
                 judged_wrong(strength, shown), 1)


# task -> (generator, share of the examples)
TASKS: dict[str, tuple[Callable[[random.Random, Pools], Draft], float]] = {
    "one_word": (one_word, 0.07), "detailed": (detailed, 0.06), "bullets": (bullets, 0.07),
    "language": (language, 0.075), "yes_no": (yes_no, 0.06), "json": (json_format, 0.065),
    "capital": (capital, 0.10), "definition": (definition, 0.10), "advice": (advice, 0.085), "unit": (unit, 0.065),
    "arithmetic": (arithmetic, 0.10), "sorting": (sorting, 0.075), "conversion": (conversion, 0.075),
}


def drafts(rng: random.Random, pools: Pools, n: int) -> list[Draft]:
    """Exactly ``n`` drafts, each task getting its share (largest remainders), in shuffled order."""
    total = sum(w for _, w in TASKS.values())
    raw = {t: n * w / total for t, (_, w) in TASKS.items()}
    counts = {t: int(r) for t, r in raw.items()}
    for t in sorted(raw, key=lambda t: counts[t] - raw[t])[: n - sum(counts.values())]:
        counts[t] += 1
    out = [TASKS[t][0](rng, pools) for t in TASKS for _ in range(counts[t])]
    for d in out:
        if d.chosen == d.rejected:
            raise AssertionError(f"generator for {d.task} produced identical responses: {d.chosen!r}")
    rng.shuffle(out)
    return out


# ---------------------------------------------------------------------------------------------
# Drafts -> canonical examples.


def messages(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def votes_for(rng: random.Random, strength: int) -> list[int] | None:
    """Per-annotator signed preferences (> 0 prefers chosen) on HelpSteer2's -3..3 scale, for ~30% of pairs."""
    if rng.random() >= 0.3:
        return None
    out = [max(-3, min(3, strength + rng.choice((-1, 0, 0, 0, 1)))) for _ in range(rng.choice((3, 3, 5)))]
    if strength == 1 and rng.random() < 0.25:
        out[0] = -1  # an annotator who disagrees: the slight preferences are the contested ones
    while sum(out) <= 0:  # the panel as a whole must still prefer the chosen response
        out[out.index(min(out))] += 1
    return out


def to_pair(rng: random.Random, d: Draft, split: str) -> dict[str, Any]:
    meta = {"task": d.task, "family": d.family, "split": split}
    pair = PreferencePair(tuple(messages(d.prompt)), d.chosen, d.rejected, d.strength, None, meta)
    out = pair.to_dict()
    out["votes"] = votes_for(rng, d.strength)
    return out


def verbosity(text: str) -> int:
    n = len(text.split())
    return 0 if n <= 2 else 1 if n <= 8 else 2 if n <= 18 else 3 if n <= 30 else 4


# kind of response -> (helpfulness, correctness, coherence)
PROFILE = {
    "compliant": (4, 4, 4), "full_sentence": (2, 4, 4), "one_word": (1, 3, 3), "one_sentence": (2, 4, 4),
    "paragraph": (2, 4, 4), "four_bullets": (2, 4, 4), "two_bullets": (2, 3, 4), "wrong_language": (1, 3, 4),
    "no_yes_no": (3, 4, 4), "wrong_answer": (0, 0, 3), "prose": (2, 4, 4), "wrong_keys": (2, 3, 4),
    "other_question": (0, 1, 3), "restates": (0, 2, 3), "refusal": (0, 2, 4), "off_topic": (0, 0, 1),
    "wrong_unit": (1, 1, 3), "wrong_by_1": (2, 1, 4), "wrong_by_2": (1, 0, 4), "wrong_by_3": (0, 0, 2),
}


def to_rated(rng: random.Random, d: Draft, split: str, which: str) -> dict[str, Any]:
    text, kind = (d.chosen, "compliant") if which == "chosen" else (d.rejected, d.kind)
    scores = [*PROFILE[kind], d.complexity if kind != "refusal" else 0, verbosity(text)]
    for i in range(3):  # annotators are noisy on the subjective attributes
        if rng.random() < 0.15:
            scores[i] = max(0, min(4, scores[i] + rng.choice((-1, 1))))
    attrs: dict[str, int | None] = dict(zip(ATTRIBUTES, scores))
    missing = [a for a in ATTRIBUTES if rng.random() < 0.03]
    for a in missing[:2]:
        attrs[a] = None
    meta = {"task": d.task, "family": d.family, "kind": kind, "split": split}
    return RatedResponse(tuple(messages(d.prompt)), text, attrs, meta).to_dict()


def to_judge(rng: random.Random, d: Draft) -> dict[str, Any]:
    chosen_first = rng.random() < 0.5
    c, r = (1, 2) if chosen_first else (2, 1)
    first, second = (d.chosen, d.rejected) if chosen_first else (d.rejected, d.chosen)
    notes = {c: f"@Response {c} {d.good}.", r: f"@Response {r} {d.bad}."}
    degree = {1: "slightly better", 2: "better", 3: "much better"}[d.strength]
    closing = rng.choice(("Therefore, ", "Overall, ", "So ", "For this reason, ", ""))
    verdict = f"{closing}@Response {c} is {degree} than @Response {r}."
    verdict = verdict[0].upper() + verdict[1:] if not closing else verdict
    body = [d.request, notes[1], notes[2]] if rng.random() < 0.7 else [d.request, notes[r], notes[c]]
    example = JudgeExample(tuple(messages(d.prompt)), first, second, " ".join(body + [verdict]), c, d.strength,
                           {"task": d.task, "family": d.family, "split": "train"})
    return example.to_dict()


# ---------------------------------------------------------------------------------------------
# Writing and checking.


def validate(name: str, rows: list[dict[str, Any]]) -> None:
    """Every row must pass rmlib's own constructors; fail here rather than in someone's training run."""
    for i, row in enumerate(rows):
        if name.startswith("preference"):
            make_pair(name, i, row["prompt"], row["chosen"], row["rejected"], strength=row["strength"],
                      votes=row["votes"], meta=row["meta"])
        elif name.startswith("ratings"):
            make_rated(name, i, row["prompt"], row["response"], row["attributes"], meta=row["meta"],
                       score_range=(0, 4))
        else:
            make_judge(name, i, row["prompt"], row["response_1"], row["response_2"], row["justification"],
                       row["better"], strength=row["strength"], meta=row["meta"])


def build(seed: int = SEED) -> dict[str, list[dict[str, Any]]]:
    """All five datasets as lists of plain dicts, keyed by file name."""
    pools = split_pools(seed)
    out: dict[str, list[dict[str, Any]]] = {}
    for split, n_pairs, n_rated in (("train", 1500, 1200), ("test", 300, 300)):
        rng = random.Random(f"{seed}/preference/{split}")
        out[f"preference_{split}.jsonl"] = [to_pair(rng, d, split) for d in drafts(rng, pools[split], n_pairs)]
        rng = random.Random(f"{seed}/ratings/{split}")
        rated = []
        for d in drafts(rng, pools[split], n_rated // 2):
            rated += [to_rated(rng, d, split, "chosen"), to_rated(rng, d, split, "rejected")]
        rng.shuffle(rated)
        out[f"ratings_{split}.jsonl"] = rated
    rng = random.Random(f"{seed}/judge")
    out["judge.jsonl"] = [to_judge(rng, d) for d in drafts(rng, pools["train"], 300)]
    for name, rows in out.items():
        validate(name, rows)
    return out


def write(out_dir: Path, seed: int = SEED) -> dict[str, int]:
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, rows in build(seed).items():
        with open(out_dir / name, "w", encoding="utf-8", newline="\n") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        counts[name] = len(rows)
    return counts


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=SAMPLES_DIR, help="output directory "
                        "(default: rmlib/data/samples, i.e. rewrite the bundled files)")
    parser.add_argument("--seed", type=int, default=SEED, help="the bundled files use the default")
    args = parser.parse_args(argv)
    for name, n in write(args.out, args.seed).items():
        print(f"{args.out / name}: {n} records")


if __name__ == "__main__":
    main()
