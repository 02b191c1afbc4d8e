"""Words the feed generator builds plausible product text from.

Brands per top-level category, adjectives, colours, materials and gender words
in the languages affiliate feeds arrive in (English, German, French, Spanish,
Dutch, Swedish), and the price style of each locale. Data only, no logic.
"""

from __future__ import annotations

LANGUAGES = ("en", "de", "fr", "es", "nl", "sv")
# locale → (language, currency)
LOCALES: dict[str, tuple[str, str]] = {
    "en-GB": ("en", "GBP"),
    "en-US": ("en", "USD"),
    "de-DE": ("de", "EUR"),
    "fr-FR": ("fr", "EUR"),
    "es-ES": ("es", "EUR"),
    "nl-NL": ("nl", "EUR"),
    "sv-SE": ("sv", "SEK"),
}

BRANDS: dict[str, tuple[str, ...]] = {
    "Apparel & Accessories": (
        "Nike",
        "adidas",
        "Puma",
        "Levi's",
        "Tommy Hilfiger",
        "The North Face",
        "H&M",
        "Zara",
        "Mango",
        "Superdry",
        "Calvin Klein",
        "Esprit",
        "s.Oliver",
        "Jack & Jones",
        "Vero Moda",
        "Dr. Martens",
        "Birkenstock",
        "Ray-Ban",
        "Fossil",
        "Michael Kors",
    ),
    "Electronics": (
        "Samsung",
        "Sony",
        "Philips",
        "LG",
        "Bose",
        "JBL",
        "Logitech",
        "Anker",
        "Canon",
        "Panasonic",
        "Sennheiser",
        "TP-Link",
        "Lenovo",
        "ASUS",
        "Garmin",
    ),
    "Home & Garden": (
        "IKEA",
        "Bosch",
        "WMF",
        "Tefal",
        "Le Creuset",
        "Dyson",
        "Gardena",
        "Villeroy & Boch",
        "Zwilling",
        "Kärcher",
        "Brabantia",
        "Joseph Joseph",
    ),
    "Health & Beauty": (
        "L'Oréal",
        "Nivea",
        "Clinique",
        "The Body Shop",
        "Braun",
        "Oral-B",
        "Weleda",
        "Garnier",
    ),
    "Sporting Goods": ("Decathlon", "Wilson", "Salomon", "Head", "Under Armour", "Asics", "Mizuno"),
    "Toys & Games": ("LEGO", "Playmobil", "Hasbro", "Mattel", "Ravensburger", "Schleich"),
}
GENERIC_BRANDS = (
    "Northwind",
    "Brightline",
    "Oakridge",
    "Nordic Living",
    "Urban Basics",
    "Acme",
    "Bluebird",
    "Maison Verte",
    "Fjällform",
    "Hometrend",
    "ProLine",
    "EcoWare",
    "Silverleaf",
    "Tradewell",
)

ADJECTIVES: dict[str, tuple[str, ...]] = {
    "en": (
        "Classic",
        "Premium",
        "Lightweight",
        "Compact",
        "Vintage",
        "Deluxe",
        "Essential",
        "Ergonomic",
        "Stylish",
        "Durable",
        "Eco",
        "Slim",
        "Heavy-Duty",
        "Soft",
    ),
    "de": ("Klassisch", "Premium", "Leicht", "Kompakt", "Robust", "Elegant", "Weich", "Modern"),
    "fr": ("Classique", "Premium", "Léger", "Compact", "Élégant", "Doux", "Moderne", "Résistant"),
    "es": ("Clásico", "Premium", "Ligero", "Compacto", "Elegante", "Suave", "Moderno"),
    "nl": ("Klassiek", "Premium", "Licht", "Compact", "Stevig", "Zacht", "Modern"),
    "sv": ("Klassisk", "Premium", "Lätt", "Kompakt", "Stilren", "Mjuk", "Modern"),
}
COLOURS: dict[str, tuple[str, ...]] = {
    "en": ("Black", "White", "Navy", "Red", "Grey", "Beige", "Olive", "Blue", "Pink", "Green"),
    "de": ("Schwarz", "Weiß", "Marineblau", "Rot", "Grau", "Beige", "Blau", "Grün"),
    "fr": ("Noir", "Blanc", "Bleu marine", "Rouge", "Gris", "Beige", "Bleu", "Vert"),
    "es": ("Negro", "Blanco", "Azul marino", "Rojo", "Gris", "Beige", "Azul", "Verde"),
    "nl": ("Zwart", "Wit", "Marineblauw", "Rood", "Grijs", "Beige", "Blauw", "Groen"),
    "sv": ("Svart", "Vit", "Marinblå", "Röd", "Grå", "Beige", "Blå", "Grön"),
}
MATERIALS: dict[str, tuple[str, ...]] = {
    "en": ("cotton", "leather", "stainless steel", "bamboo", "recycled polyester", "oak", "glass"),
    "de": ("Baumwolle", "Leder", "Edelstahl", "Bambus", "Eiche", "Glas"),
    "fr": ("coton", "cuir", "acier inoxydable", "bambou", "chêne", "verre"),
    "es": ("algodón", "cuero", "acero inoxidable", "bambú", "roble", "vidrio"),
    "nl": ("katoen", "leer", "roestvrij staal", "bamboe", "eiken", "glas"),
    "sv": ("bomull", "läder", "rostfritt stål", "bambu", "ek", "glas"),
}
# How each language says "for women/men" in a title, and its gender column words.
FOR_GENDER: dict[str, dict[str, str]] = {
    "en": {"female": "for Women", "male": "for Men", "unisex": "Unisex"},
    "de": {"female": "für Damen", "male": "für Herren", "unisex": "Unisex"},
    "fr": {"female": "pour Femme", "male": "pour Homme", "unisex": "Unisexe"},
    "es": {"female": "para Mujer", "male": "para Hombre", "unisex": "Unisex"},
    "nl": {"female": "voor Dames", "male": "voor Heren", "unisex": "Unisex"},
    "sv": {"female": "för Dam", "male": "för Herr", "unisex": "Unisex"},
}
GENDER_VALUES: dict[str, tuple[str, ...]] = {
    "female": ("Women", "womens", "Female", "F", "Damen", "Femme", "Mujer", "Dames", "LADIES"),
    "male": ("Men", "mens", "Male", "M", "Herren", "Homme", "Hombre", "Heren", "MEN'S"),
    "unisex": ("Unisex", "unisex", "UNISEX", "Unisexe"),
}
SIZES = (
    "XS",
    "S",
    "M",
    "L",
    "XL",
    "XXL",
    "small",
    "Medium",
    "x-large",
    "2XL",
    "One Size",
    "Einheitsgröße",
    "36",
    "38",
    "40",
    "42",
    "44",
    "EU 42",
    "10.5",
    "32W 34L",
)
# A few category words in other languages, so titles are not English with foreign colours.
NOUNS: dict[str, dict[str, str]] = {
    "de": {
        "Shoes": "Schuhe",
        "Shirt": "Hemd",
        "Dress": "Kleid",
        "Bag": "Tasche",
        "Watch": "Uhr",
        "Jacket": "Jacke",
        "Lamp": "Lampe",
        "Chair": "Stuhl",
        "Table": "Tisch",
        "Headphones": "Kopfhörer",
        "Pan": "Pfanne",
        "Knife": "Messer",
        "Toy": "Spielzeug",
    },
    "fr": {
        "Shoes": "Chaussures",
        "Shirt": "Chemise",
        "Dress": "Robe",
        "Bag": "Sac",
        "Watch": "Montre",
        "Jacket": "Veste",
        "Lamp": "Lampe",
        "Chair": "Chaise",
        "Table": "Table",
        "Headphones": "Casque",
        "Pan": "Poêle",
        "Knife": "Couteau",
    },
    "es": {
        "Shoes": "Zapatos",
        "Shirt": "Camisa",
        "Dress": "Vestido",
        "Bag": "Bolso",
        "Watch": "Reloj",
        "Jacket": "Chaqueta",
        "Lamp": "Lámpara",
        "Chair": "Silla",
    },
    "nl": {
        "Shoes": "Schoenen",
        "Shirt": "Overhemd",
        "Dress": "Jurk",
        "Bag": "Tas",
        "Watch": "Horloge",
        "Jacket": "Jas",
        "Lamp": "Lamp",
        "Chair": "Stoel",
    },
    "sv": {
        "Shoes": "Skor",
        "Shirt": "Skjorta",
        "Dress": "Klänning",
        "Bag": "Väska",
        "Watch": "Klocka",
        "Jacket": "Jacka",
        "Lamp": "Lampa",
        "Chair": "Stol",
    },
}
DESCRIPTION_SENTENCES: dict[str, tuple[str, ...]] = {
    "en": (
        "Perfect for everyday use.",
        "Made to last &amp; easy to care for.",
        "Free delivery on orders over &pound;50.",
        "A customer favourite &ndash; now back.",
    ),
    "de": (
        "Ideal für den Alltag.",
        "Langlebig &amp; pflegeleicht.",
        "Versandkostenfrei ab 50&nbsp;&euro;.",
    ),
    "fr": (
        "Idéal au quotidien.",
        "Durable &amp; facile d&#39;entretien.",
        "Livraison offerte dès 50&nbsp;&euro;.",
    ),
    "es": ("Perfecto para el día a día.", "Duradero y fácil de cuidar."),
    "nl": ("Perfect voor dagelijks gebruik.", "Duurzaam &amp; makkelijk te onderhouden."),
    "sv": ("Perfekt för vardagen.", "Hållbar &amp; lättskött."),
}
# Merchant wording for top-level categories (what a shop calls its departments).
MERCHANT_DEPARTMENTS: dict[str, tuple[str, ...]] = {
    "Apparel & Accessories": ("Fashion", "Clothing & Shoes", "Mode", "Bekleidung", "Vêtements"),
    "Electronics": ("Tech", "Electronics & Gadgets", "Elektronik", "High-Tech"),
    "Home & Garden": ("Home", "Home & Living", "Wohnen", "Maison & Jardin"),
    "Health & Beauty": ("Beauty", "Health", "Drogerie", "Beauté"),
    "Sporting Goods": ("Sports", "Sport & Outdoor", "Sport"),
    "Toys & Games": ("Toys", "Kids", "Spielwaren", "Jouets"),
}
EMOJI = ("🔥", "✨", "👟", "💥", "⭐", "🎁", "✅")
TITLE_PREFIXES = ("NEW!", "SALE", "Bestseller:", "*** TOP ***", "Limited Edition -", "2024")
CATEGORY_DELIMITERS = (" > ", ">", " / ", "/", " // ", " | ", "|", " » ", ", ", " >> ", "\\", "; ")

MERCHANTS: tuple[tuple[str, str], ...] = (
    ("Northwind Outfitters", "northwind-outfitters.example"),
    ("Casa Bella Home", "casabella-home.example"),
    ("TechHaus", "techhaus.example"),
    ("Le Petit Magasin", "lepetitmagasin.example"),
    ("Sportiva Nordic", "sportiva-nordic.example"),
    ("Kids & Co", "kidsandco.example"),
    ("Gadget Galaxy", "gadgetgalaxy.example"),
    ("De Woonwinkel", "dewoonwinkel.example"),
    ("Trendhaus Berlin", "trendhaus-berlin.example"),
    ("Hemma Butiken", "hemmabutiken.example"),
)
