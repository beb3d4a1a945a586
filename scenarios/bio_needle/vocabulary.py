"""Word lists the biography generator draws from.

Kept apart from the generator so the prose can be widened (more roles, places, sentence
material) without touching the logic that keeps the labels exact. Real places and
nationalities make the text read like Wikipedia; the people themselves are always fake.
"""

from __future__ import annotations

from dataclasses import dataclass

# ---------------------------------------------------------------------------------------
# Nationalities: demonym (the label, lowercase) -> country and a few of its cities.
# Single-word demonyms only, so a label is one unambiguous word in the text.
# ---------------------------------------------------------------------------------------
NATIONALITIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "french": ("France", ("Lyon", "Marseille", "Bordeaux", "Toulouse", "Nantes")),
    "german": ("Germany", ("Hamburg", "Leipzig", "Cologne", "Dresden", "Bremen")),
    "italian": ("Italy", ("Turin", "Bologna", "Naples", "Genoa", "Verona")),
    "spanish": ("Spain", ("Seville", "Valencia", "Bilbao", "Zaragoza", "Granada")),
    "portuguese": ("Portugal", ("Porto", "Coimbra", "Braga", "Faro")),
    "brazilian": ("Brazil", ("Recife", "Curitiba", "Salvador", "Belo Horizonte")),
    "argentine": ("Argentina", ("Rosario", "Mendoza", "Córdoba", "La Plata")),
    "mexican": ("Mexico", ("Guadalajara", "Monterrey", "Puebla", "Oaxaca")),
    "canadian": ("Canada", ("Winnipeg", "Halifax", "Calgary", "Quebec City")),
    "american": ("the United States", ("Cleveland", "Denver", "Baltimore", "Sacramento")),
    "british": ("the United Kingdom", ("Leeds", "Bristol", "Glasgow", "Cardiff")),
    "irish": ("Ireland", ("Cork", "Galway", "Limerick", "Waterford")),
    "dutch": ("the Netherlands", ("Utrecht", "Groningen", "Eindhoven", "Leiden")),
    "belgian": ("Belgium", ("Ghent", "Liège", "Antwerp", "Bruges")),
    "swiss": ("Switzerland", ("Basel", "Lausanne", "Lucerne", "Bern")),
    "austrian": ("Austria", ("Graz", "Linz", "Salzburg", "Innsbruck")),
    "swedish": ("Sweden", ("Gothenburg", "Malmö", "Uppsala", "Umeå")),
    "norwegian": ("Norway", ("Bergen", "Trondheim", "Stavanger", "Tromsø")),
    "danish": ("Denmark", ("Aarhus", "Odense", "Aalborg")),
    "finnish": ("Finland", ("Tampere", "Turku", "Oulu")),
    "polish": ("Poland", ("Kraków", "Gdańsk", "Poznań", "Wrocław")),
    "czech": ("the Czech Republic", ("Brno", "Ostrava", "Plzeň")),
    "hungarian": ("Hungary", ("Debrecen", "Szeged", "Pécs")),
    "greek": ("Greece", ("Thessaloniki", "Patras", "Heraklion")),
    "turkish": ("Turkey", ("Izmir", "Bursa", "Trabzon", "Antalya")),
    "russian": ("Russia", ("Kazan", "Samara", "Novosibirsk", "Yekaterinburg")),
    "ukrainian": ("Ukraine", ("Lviv", "Kharkiv", "Odesa", "Dnipro")),
    "japanese": ("Japan", ("Osaka", "Sapporo", "Nagoya", "Fukuoka")),
    "chinese": ("China", ("Chengdu", "Wuhan", "Nanjing", "Xi'an")),
    "indian": ("India", ("Pune", "Jaipur", "Lucknow", "Chennai")),
    "australian": ("Australia", ("Adelaide", "Brisbane", "Perth", "Hobart")),
    "egyptian": ("Egypt", ("Alexandria", "Aswan", "Luxor")),
    "nigerian": ("Nigeria", ("Ibadan", "Kano", "Enugu")),
    "kenyan": ("Kenya", ("Mombasa", "Kisumu", "Eldoret")),
    "chilean": ("Chile", ("Valparaíso", "Concepción", "Temuco")),
    "colombian": ("Colombia", ("Medellín", "Cali", "Cartagena")),
}
DEMONYMS: tuple[str, ...] = tuple(NATIONALITIES)
ALL_CITIES: tuple[str, ...] = tuple(c for _, cities in NATIONALITIES.values() for c in cities)

# Nationalities only the training split uses (never a test label, never in test text): with 30
# seen labels alone a tuned reader learns a 30-way choice and rarely writes a nationality it never
# saw (22-37 % on the held-out ones); with these 40 beside them it copies the word the text gives.
TRAIN_NATIONALITIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "peruvian": ("Peru", ("Arequipa", "Cusco", "Trujillo")),
    "moroccan": ("Morocco", ("Fez", "Tangier", "Agadir")),
    "thai": ("Thailand", ("Chiang Mai", "Phuket", "Khon Kaen")),
    "vietnamese": ("Vietnam", ("Hue", "Da Nang", "Haiphong")),
    "icelandic": ("Iceland", ("Akureyri", "Kopavogur", "Selfoss")),
    "estonian": ("Estonia", ("Tartu", "Narva", "Parnu")),
    "latvian": ("Latvia", ("Daugavpils", "Liepaja", "Jelgava")),
    "lithuanian": ("Lithuania", ("Kaunas", "Klaipeda", "Siauliai")),
    "romanian": ("Romania", ("Cluj-Napoca", "Iasi", "Timisoara")),
    "bulgarian": ("Bulgaria", ("Plovdiv", "Varna", "Burgas")),
    "serbian": ("Serbia", ("Novi Sad", "Nis", "Kragujevac")),
    "croatian": ("Croatia", ("Zadar", "Rijeka", "Osijek")),
    "slovak": ("Slovakia", ("Kosice", "Presov", "Zilina")),
    "slovenian": ("Slovenia", ("Maribor", "Celje", "Koper")),
    "georgian": ("Georgia", ("Kutaisi", "Batumi", "Rustavi")),
    "armenian": ("Armenia", ("Gyumri", "Vanadzor", "Dilijan")),
    "iranian": ("Iran", ("Isfahan", "Shiraz", "Tabriz")),
    "israeli": ("Israel", ("Haifa", "Beersheba", "Netanya")),
    "lebanese": ("Lebanon", ("Tripoli", "Sidon", "Tyre")),
    "jordanian": ("Jordan", ("Irbid", "Zarqa", "Aqaba")),
    "pakistani": ("Pakistan", ("Lahore", "Karachi", "Peshawar")),
    "bangladeshi": ("Bangladesh", ("Chittagong", "Khulna", "Sylhet")),
    "nepalese": ("Nepal", ("Pokhara", "Lalitpur", "Biratnagar")),
    "indonesian": ("Indonesia", ("Surabaya", "Bandung", "Medan")),
    "malaysian": ("Malaysia", ("Penang", "Ipoh", "Kuching")),
    "filipino": ("the Philippines", ("Cebu", "Davao", "Iloilo")),
    "korean": ("Korea", ("Busan", "Daegu", "Incheon")),
    "mongolian": ("Mongolia", ("Darkhan", "Erdenet", "Khovd")),
    "ghanaian": ("Ghana", ("Kumasi", "Tamale", "Takoradi")),
    "ethiopian": ("Ethiopia", ("Gondar", "Mekelle", "Hawassa")),
    "senegalese": ("Senegal", ("Thies", "Kaolack", "Ziguinchor")),
    "tanzanian": ("Tanzania", ("Arusha", "Mwanza", "Dodoma")),
    "ugandan": ("Uganda", ("Gulu", "Mbarara", "Jinja")),
    "tunisian": ("Tunisia", ("Sfax", "Sousse", "Bizerte")),
    "algerian": ("Algeria", ("Oran", "Constantine", "Annaba")),
    "cuban": ("Cuba", ("Santiago de Cuba", "Camaguey", "Holguin")),
    "venezuelan": ("Venezuela", ("Maracaibo", "Maturin", "Barquisimeto")),
    "uruguayan": ("Uruguay", ("Salto", "Paysandu", "Rivera")),
    "bolivian": ("Bolivia", ("Santa Cruz", "Cochabamba", "Sucre")),
    "ecuadorian": ("Ecuador", ("Guayaquil", "Cuenca", "Ambato")),
}

# ---------------------------------------------------------------------------------------
# Fake names, built from syllables: pronounceable, gendered by ending, not in any
# model's memory. Surnames are kept unique per seed, so a later "Tovani studied ..."
# can only refer to one person.
# ---------------------------------------------------------------------------------------
SYLLABLES: tuple[str, ...] = (
    "ba",
    "be",
    "bo",
    "da",
    "de",
    "di",
    "do",
    "fa",
    "fe",
    "fi",
    "ga",
    "ge",
    "go",
    "ha",
    "ka",
    "ke",
    "ki",
    "ko",
    "la",
    "le",
    "li",
    "lo",
    "lu",
    "ma",
    "me",
    "mi",
    "mo",
    "na",
    "ne",
    "ni",
    "no",
    "pa",
    "pe",
    "po",
    "ra",
    "re",
    "ri",
    "ro",
    "ru",
    "sa",
    "se",
    "si",
    "so",
    "ta",
    "te",
    "ti",
    "to",
    "va",
    "ve",
    "vi",
    "vo",
    "za",
    "zo",
    "bra",
    "dre",
    "kra",
    "tri",
    "vla",
    "sta",
    "mar",
    "tel",
    "dor",
    "van",
    "kel",
    "ser",
    "lin",
    "ros",
    "tam",
    "nor",
    "bel",
    "cor",
)
GIVEN_ENDINGS = {
    "m": ("n", "r", "s", "k", "o", "el", "an", "or", "us", "im", "ert", "ian"),
    "f": ("a", "e", "ia", "ina", "ette", "ara", "ela", "ise", "ka", "ira", "ola"),
}
SURNAME_ENDINGS: tuple[str, ...] = (
    "ski",
    "son",
    "ez",
    "ani",
    "berg",
    "ard",
    "ell",
    "ot",
    "ier",
    "ada",
    "ic",
    "en",
    "ovic",
    "ström",
    "ley",
    "ton",
    "ine",
    "etti",
    "aux",
    "ar",
    "ius",
    "ek",
    "ura",
    "anu",
    "das",
)
# Whole-word names that would collide with words the tests and readers look for.
BANNED_NAME_WORDS = frozenset(
    {
        "he",
        "she",
        "his",
        "her",
        "hers",
        "him",
        "himself",
        "herself",
        "a",
        "an",
        "the",
        "is",
        "was",
        "born",
        "died",
        "unknown",
    }
    | set(DEMONYMS)
)

MONTHS: tuple[str, ...] = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

SUMMER_OLYMPICS: tuple[int, ...] = tuple(y for y in range(1900, 2024, 4) if y not in (1916, 1940, 1944)) + (2021,)
SUMMER_OLYMPICS = tuple(sorted(set(SUMMER_OLYMPICS) - {2020}))
WINTER_OLYMPICS: tuple[int, ...] = (
    1924,
    1928,
    1932,
    1936,
    1948,
    1952,
    1956,
    1960,
    1964,
    1968,
    1972,
    1976,
    1980,
    1984,
    1988,
    1992,
    1994,
    1998,
    2002,
    2006,
    2010,
    2014,
    2018,
    2022,
)


# ---------------------------------------------------------------------------------------
# Occupations. The labels are about the person's OWN occupation:
#   sportsperson: competed as an athlete (player, racer, rower, boxer, ...). Coaching staff,
#     club officials, journalists, commentators, doctors and architects of sport are not.
#   politician: held political office or stood as a candidate for one (mayor, member of
#     parliament, senator, minister, councillor, governor, party leader, candidate).
#     Studying, advising, reporting on, lobbying or serving politicians is not.
# Referees are left out on purpose: whether a referee is an "athlete" is a matter of
# taste, and a label nobody can agree on measures noise, not reading.
# Career templates use {He}/{he}/{his}/{him} for the person, {Surname}, and the slot names
# filled by the generator (see generator._slots). Other people are never given pronouns.
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Role:
    key: str
    nouns: tuple[str, str]  # (male, female) noun phrase used in the opening: "footballer"
    sportsperson: bool
    politician: bool
    career: tuple[str, ...]  # [0] establishes the labels and is always used; the rest are optional
    min_age: int = 22  # the youngest age at which the career can have started
    min_year: int = 0  # no career before this year (broadcasting, polling, ...)


_SPORT = [
    Role(
        "footballer",
        ("footballer", "footballer"),
        True,
        False,
        (
            "{He} played as a {position} for {club} and {club2}.",
            "{He} spent most of {his} career at {club}, where {he} won the league title in {y1}.",
            "{He} made {n2} appearances for the national team between {y1} and {y2}.",
            "{He} played for clubs in {country2} and {country3} before retiring in {y2}.",
        ),
        18,
    ),
    Role(
        "rower",
        ("rower", "rower"),
        True,
        False,
        (
            "{He} won a {medal} medal in the {boat} at the {oly} Summer Olympics.",
            "{He} rowed for {club} from {y1} to {y2}.",
        ),
        18,
    ),
    Role(
        "tennis",
        ("tennis player", "tennis player"),
        True,
        False,
        (
            "{He} reached the {round} of the {slam} in {y1}.",
            "{He} won {n1} singles titles on the professional tour and retired in {y2}.",
        ),
        18,
    ),
    Role(
        "cyclist",
        ("road cyclist", "road cyclist"),
        True,
        False,
        (
            "{He} rode the Tour de France {n1} times and won a stage in {y1}.",
            "{He} turned professional in {y1} with the {club} team.",
        ),
        18,
        min_year=1903,
    ),
    Role(
        "runner",
        ("long-distance runner", "long-distance runner"),
        True,
        False,
        (
            "{He} won the {city2} Marathon in {y1} in a time of 2:{mm}:{ss}.",
            "{He} ran the 10,000 metres at the {oly} Summer Olympics.",
        ),
        18,
    ),
    Role(
        "swimmer",
        ("swimmer", "swimmer"),
        True,
        False,
        (
            "{He} competed in the {stroke} at the {oly} Summer Olympics.",
            "{He} set a national record in the {stroke} in {y1}.",
        ),
        16,
    ),
    Role(
        "boxer",
        ("boxer", "boxer"),
        True,
        False,
        (
            "{He} fought {n2} professional bouts between {y1} and {y2}, winning most of them.",
            "{He} held the {weight} title of Europe from {y1} to {y2}.",
        ),
        18,
    ),
    Role(
        "basketball",
        ("basketball player", "basketball player"),
        True,
        False,
        (
            "{He} played {n1} seasons as a {bpos} for {club}.",
            "{He} was named the league's most valuable player in {y1}.",
        ),
        18,
        min_year=1946,
    ),
    Role(
        "skier",
        ("alpine skier", "alpine skier"),
        True,
        False,
        (
            "{He} competed in the {ski} at the {woly} Winter Olympics.",
            "{He} won {n1} World Cup races between {y1} and {y2}.",
        ),
        17,
        min_year=1967,
    ),
    Role(
        "fencer",
        ("fencer", "fencer"),
        True,
        False,
        (
            "{He} won the {weapon} title at the world championships in {y1}.",
            "{He} fenced at the {oly} Summer Olympics.",
        ),
        18,
    ),
    Role(
        "hockey",
        ("ice hockey player", "ice hockey player"),
        True,
        False,
        (
            "{He} played {n2} games as a {hpos} for {club}.",
            "{He} captained {club} from {y1} to {y2}.",
        ),
        18,
    ),
    Role(
        "sprinter",
        ("sprinter", "sprinter"),
        True,
        False,
        (
            "{He} ran the {dash} at the {oly} Summer Olympics and reached the semi-finals.",
            "{He} won the national title in the {dash} in {y1}.",
        ),
        17,
    ),
]

_POLITICS = [
    Role(
        "mayor",
        ("politician", "politician"),
        False,
        True,
        (
            "{He} served as mayor of {city2} from {y1} to {y2}.",
            "{He} was first elected to the {city2} city council in {y1}.",
        ),
        28,
    ),
    Role(
        "mp",
        ("politician", "politician"),
        False,
        True,
        (
            "{He} was elected to parliament in {y1} and sat as a member of parliament until {y2}.",
            "{He} served on the parliamentary committee on {portfolio} from {y1} to {y2}.",
        ),
        28,
    ),
    Role(
        "senator",
        ("politician", "politician"),
        False,
        True,
        (
            "{He} served in the senate from {y1} to {y2}.",
            "{He} was elected senator for the {province} region in {y1}.",
        ),
        30,
    ),
    Role(
        "minister",
        ("politician", "politician"),
        False,
        True,
        (
            "{He} served as minister of {portfolio} from {y1} to {y2}.",
            "{He} joined the {party} in {y1} and entered the cabinet a few years later.",
        ),
        30,
    ),
    Role(
        "party_leader",
        ("politician", "politician"),
        False,
        True,
        (
            "{He} led the {party} from {y1} to {y2}.",
            "{He} sat in the national assembly for the {party} from {y1} to {y2}.",
        ),
        30,
    ),
    Role(
        "councillor",
        ("lawyer and politician", "lawyer and politician"),
        False,
        True,
        (
            "{He} was a member of the {city2} city council from {y1} to {y2}.",
            "{He} practised law in {city2} before winning a council seat in {y1}.",
        ),
        28,
    ),
    Role(
        "governor",
        ("politician", "politician"),
        False,
        True,
        ("{He} was governor of the {province} province from {y1} to {y2}.",),
        30,
    ),
    Role(
        "candidate",
        ("teacher and politician", "teacher and politician"),
        False,
        True,
        (
            "{He} stood as the {party} candidate for parliament in {y1} but was not elected.",
            "{He} ran unsuccessfully for mayor of {city2} in {y1}.",
        ),
        28,
    ),
]

_BOTH = [
    Role(
        "footballer_senator",
        ("footballer and politician", "footballer and politician"),
        True,
        True,
        (
            "{He} played as a {position} for {club} before entering politics.",
            "After retiring as a player, {he} was elected to the senate in {y2}.",
        ),
        18,
    ),
    Role(
        "swimmer_mayor",
        ("swimmer and politician", "swimmer and politician"),
        True,
        True,
        ("{He} swam at the {oly} Summer Olympics and was later elected mayor of {city2}.",),
        16,
    ),
    Role(
        "boxer_mp",
        ("boxer and politician", "boxer and politician"),
        True,
        True,
        (
            "After retiring from the ring in {y1}, {he} was elected to parliament in {y2}.",
            "{He} fought {n2} professional bouts before entering politics.",
        ),
        18,
    ),
    Role(
        "rower_minister",
        ("rower and politician", "rower and politician"),
        True,
        True,
        (
            "{He} won a {medal} medal in the {boat} at the {oly} Summer Olympics.",
            "{He} later served as minister of sport from {y1} to {y2}.",
        ),
        18,
    ),
]

# Sport words without an athlete: the trap is to answer sportsperson=true.
_SPORT_TRAPS = [
    Role(
        "sports_journalist",
        ("sports journalist", "sports journalist"),
        False,
        False,
        (
            "{He} covered football for the {paper} for {n1} years.",
            "{He} reported on {n1} Summer Olympics and wrote a biography of a famous goalkeeper.",
        ),
    ),
    Role(
        "club_chairman",
        ("businessman", "businesswoman"),
        False,
        False,
        (
            "{He} was chairman of the football club {club} from {y1} to {y2}.",
            "Under {his} chairmanship {club} won the national cup in {y2}.",
        ),
        30,
    ),
    Role(
        "commentator",
        ("sports broadcaster", "sports broadcaster"),
        False,
        False,
        (
            "{He} commentated on {sport} for {broadcaster} from {y1} to {y2}.",
            "{He} presented the Olympic coverage of {broadcaster} in {oly}.",
        ),
        min_year=1925,
    ),
    Role(
        "team_doctor",
        ("physician", "physician"),
        False,
        False,
        (
            "{He} worked as the team doctor of {club} from {y1} to {y2}.",
            "{He} wrote widely on injuries among professional footballers.",
        ),
        28,
    ),
    Role(
        "stadium_architect",
        ("architect", "architect"),
        False,
        False,
        (
            "{He} designed the {city2} Olympic Stadium, completed in {y1}.",
            "{His} best-known buildings are sports halls and swimming pools.",
        ),
        28,
    ),
    Role(
        "coach_non_player",
        ("athletics coach", "athletics coach"),
        False,
        False,
        ("{He} never competed but trained several Olympic sprinters from {y1} onwards.",),
        28,
    ),
]

# Politics words without an office: the trap is to answer politician=true.
_POLITICS_TRAPS = [
    Role(
        "political_scientist",
        ("political scientist", "political scientist"),
        False,
        False,
        (
            "{He} taught political science at the University of {city2} and wrote on parliamentary elections.",
            "{His} book on the {party} appeared in {y1}.",
        ),
        28,
    ),
    Role(
        "campaign_strategist",
        ("campaign strategist", "campaign strategist"),
        False,
        False,
        (
            "{He} ran the election campaigns of several senators and mayors.",
            "{He} advised the {party} during the {y1} general election.",
        ),
    ),
    Role(
        "political_journalist",
        ("journalist", "journalist"),
        False,
        False,
        (
            "{He} reported on parliament for the {paper} from {y1} to {y2}.",
            "{He} interviewed every prime minister of the period.",
        ),
    ),
    Role(
        "speechwriter",
        ("speechwriter", "speechwriter"),
        False,
        False,
        ("{He} wrote speeches for the prime minister between {y1} and {y2}.",),
    ),
    Role(
        "civil_servant",
        ("civil servant", "civil servant"),
        False,
        False,
        ("{He} worked in the ministry of {portfolio} as a senior civil servant from {y1} to {y2}.",),
        25,
    ),
    Role(
        "pollster",
        ("pollster", "pollster"),
        False,
        False,
        ("{He} founded a polling firm in {y1} that forecast several general elections.",),
        min_year=1936,
    ),
]

_PLAIN = [
    Role(
        "painter",
        ("painter", "painter"),
        False,
        False,
        (
            "{He} is best known for {his} landscapes of the {river} valley.",
            "{His} first solo exhibition opened in {city2} in {y1}.",
        ),
    ),
    Role(
        "novelist",
        ("novelist", "novelist"),
        False,
        False,
        (
            "{His} first novel appeared in {y1}.",
            "{He} wrote {n1} novels and a volume of short stories.",
        ),
    ),
    Role(
        "physicist",
        ("physicist", "physicist"),
        False,
        False,
        (
            "{He} worked on the theory of {topic} at the University of {city2}.",
            "{He} became a professor of physics in {y1}.",
        ),
        25,
    ),
    Role(
        "composer",
        ("composer", "composer"),
        False,
        False,
        (
            "{He} wrote {n1} symphonies and a large body of chamber music.",
            "{His} opera premiered in {city2} in {y1}.",
        ),
    ),
    Role(
        "surgeon",
        ("surgeon", "surgeon"),
        False,
        False,
        (
            "{He} pioneered a technique in heart surgery in {y1}.",
            "{He} led the surgical department of the {city2} general hospital from {y1} to {y2}.",
        ),
        28,
    ),
    Role(
        "chemist",
        ("chemist", "chemist"),
        False,
        False,
        (
            "{He} is known for work on {topic}.",
            "{He} taught chemistry at the University of {city2} from {y1} to {y2}.",
        ),
        25,
    ),
    Role(
        "actor",
        ("actor", "actress"),
        False,
        False,
        (
            "{He} appeared in more than {n2} films.",
            "{He} made {his} stage debut in {city2} in {y1}.",
        ),
        18,
    ),
    Role(
        "photographer",
        ("photographer", "photographer"),
        False,
        False,
        ("{His} photographs of {city2} were first exhibited in {y1}.",),
    ),
    Role(
        "engineer",
        ("engineer", "engineer"),
        False,
        False,
        (
            "{He} designed several bridges over the {river}.",
            "{He} worked for a railway company from {y1} to {y2}.",
        ),
        23,
    ),
    Role(
        "botanist",
        ("botanist", "botanist"),
        False,
        False,
        (
            "{He} described more than {n2} species of flowering plants.",
            "{He} led a collecting expedition to {country2} in {y1}.",
        ),
        23,
    ),
    Role(
        "violinist",
        ("violinist", "violinist"),
        False,
        False,
        (
            "{He} was a member of a string quartet based in {city2} from {y1} to {y2}.",
            "{He} made {his} concert debut at the age of fifteen.",
        ),
        16,
    ),
    Role(
        "economist",
        ("economist", "economist"),
        False,
        False,
        (
            "{He} worked on {econ} and taught at the University of {city2}.",
            "{His} best-known paper appeared in {y1}.",
        ),
        25,
    ),
    Role(
        "mathematician",
        ("mathematician", "mathematician"),
        False,
        False,
        (
            "{He} worked on {math} and proved several results that bear {his} name.",
            "{He} taught mathematics at the University of {city2} from {y1} to {y2}.",
        ),
        23,
    ),
    Role("poet", ("poet", "poet"), False, False, ("{He} published {n1} collections of poetry, the first in {y1}.",)),
    Role(
        "sculptor",
        ("sculptor", "sculptor"),
        False,
        False,
        ("{His} bronze figures stand in several public squares in {city2}.",),
    ),
    Role(
        "director",
        ("film director", "film director"),
        False,
        False,
        ("{He} directed {n1} feature films, the first of which premiered in {y1}.",),
    ),
    Role("chef", ("chef", "chef"), False, False, ("{He} opened {his} first restaurant in {city2} in {y1}.",)),
    Role(
        "geologist",
        ("geologist", "geologist"),
        False,
        False,
        ("{He} mapped the mountains of {country2} between {y1} and {y2}.",),
        23,
    ),
]

# (group name, weight, roles): weights tuned so that each label is neither rare nor trivial.
ROLE_GROUPS: tuple[tuple[str, float, tuple[Role, ...]], ...] = (
    ("sport", 0.22, tuple(_SPORT)),
    ("politics", 0.18, tuple(_POLITICS)),
    ("both", 0.07, tuple(_BOTH)),
    ("sport_trap", 0.12, tuple(_SPORT_TRAPS)),
    ("politics_trap", 0.12, tuple(_POLITICS_TRAPS)),
    ("plain", 0.29, tuple(_PLAIN)),
)
ROLES: dict[str, Role] = {r.key: r for _, _, roles in ROLE_GROUPS for r in roles}

# ---------------------------------------------------------------------------------------
# Slot fillers for the career and distractor sentences.
# ---------------------------------------------------------------------------------------
SLOTS: dict[str, tuple[str, ...]] = {
    "position": ("midfielder", "defender", "striker", "goalkeeper", "winger"),
    "medal": ("gold", "silver", "bronze"),
    "boat": ("coxless four", "double sculls", "eight", "single sculls", "coxless pair"),
    "round": ("quarter-finals", "semi-finals", "final", "fourth round"),
    "slam": ("Australian Open", "French Open", "Wimbledon Championships", "US Open"),
    "stroke": (
        "100 metres backstroke",
        "200 metres butterfly",
        "400 metres freestyle",
        "100 metres breaststroke",
        "4 × 100 metres medley relay",
    ),
    "weight": ("lightweight", "welterweight", "middleweight", "heavyweight", "featherweight"),
    "bpos": ("point guard", "centre", "small forward", "shooting guard"),
    "ski": ("downhill", "giant slalom", "slalom", "super-G"),
    "weapon": ("foil", "épée", "sabre"),
    "hpos": ("defenceman", "centre", "goaltender", "winger"),
    "dash": ("100 metres", "200 metres", "400 metres"),
    "portfolio": (
        "finance",
        "health",
        "education",
        "transport",
        "agriculture",
        "justice",
        "culture",
        "defence",
        "labour",
    ),
    "party": (
        "Liberal Party",
        "Social Democratic Party",
        "Green Party",
        "Conservative Party",
        "Labour Party",
        "Centre Party",
        "Farmers' Party",
        "Christian Democratic Party",
    ),
    "province": ("northern", "southern", "eastern", "western", "central", "coastal"),
    "paper": (
        "Morning Courier",
        "Evening Herald",
        "Daily Observer",
        "Weekly Gazette",
        "Northern Tribune",
        "City Chronicle",
    ),
    "broadcaster": ("national radio", "a public television network", "a cable sports channel"),
    "sport": ("football", "cycling", "tennis", "athletics", "ice hockey", "rugby"),
    "river": ("Varne", "Osel", "Drava", "Lenna", "Morra", "Tisel"),
    "topic": (
        "superconductivity",
        "crystal growth",
        "polymer chemistry",
        "thermodynamics",
        "nuclear spectra",
        "catalysis",
    ),
    "econ": ("labour markets", "public finance", "trade policy", "monetary history"),
    "math": ("number theory", "topology", "probability", "algebraic geometry"),
    "club_suffix": ("Rovers", "United", "Athletic", "Wanderers", "Sporting", "Rowing Club", "Olympic", "City"),
    "subject": (
        "law",
        "medicine",
        "history",
        "chemistry",
        "music",
        "philosophy",
        "engineering",
        "economics",
        "architecture",
        "literature",
    ),
    "award": (
        "Order of Merit",
        "Golden Laurel",
        "Silver Compass Prize",
        "Grand Cross of Arts",
        "Lifetime Achievement Award",
    ),
    "spouse": (
        "diplomat",
        "surgeon",
        "pianist",
        "film producer",
        "former Olympic sprinter",
        "senator",
        "journalist",
        "mayor",
        "architect",
        "tennis player",
    ),
    "parent": (
        "schoolteacher",
        "railway worker",
        "mayor",
        "footballer",
        "pharmacist",
        "member of parliament",
        "farmer",
        "sports journalist",
        "judge",
        "boxer",
    ),
    "relative": ("brother", "sister", "cousin", "uncle", "aunt"),
    "relative_role": (
        "played professional football",
        "served in parliament",
        "was a well-known cyclist",
        "was mayor of a small town",
        "rowed at the Olympic Games",
        "ran for the senate",
    ),
}

CLUB_SUFFIXES: tuple[str, ...] = ("Rovers", "United", "Athletic", "Wanderers", "Sporting", "City")

EDUCATION: tuple[str, ...] = (
    "{He} studied {subject} at the University of {city3}.",
    "{He} studied in {city} and {city3}.",
    "{He} was educated in {city} and later studied {subject} in {city3}.",
    "{He} grew up in {city} and attended school there before studying {subject} in {country2}.",
)
FAMILY: tuple[str, ...] = (
    "{His} father was a {parent} and {his} mother a {parent2}.",
    "{His} {relative} {relative_role}.",
    "{He} {has} {n1} children.",
)
# Asides: mostly places and other countries, none of which states a nationality.
ASIDES: tuple[str, ...] = (
    "{He} spent several years working in {country2}.",
    "In {y_moved} {he} moved to {city3}.",
    "{He} was awarded an honorary doctorate by the University of {city4} in {y_honour}.",
    "{He} toured {country2} and {country3} several times.",
    "{He} spoke several languages and translated books from {language}.",
    "{He} wrote a memoir about {his} years in {country3}.",
)
LATER_ALIVE: tuple[str, ...] = (
    "{He} lives in {city}.",
    "{He} now lives in {city4} with {his} family.",
    "{He} still gives lectures in {city4}.",
)
LATER_DEAD: tuple[str, ...] = (
    "{He} spent {his} final years in {city}.",
    "A street in {city2} is named after {him}.",
    "{His} papers are held in an archive in {city4}.",
)
SLOTS["language"] = ("Japanese", "Russian", "Spanish", "Italian", "Swedish", "Greek", "Polish")
