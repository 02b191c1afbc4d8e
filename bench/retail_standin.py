"""A stand-in for the held-back retail catalogue: 17 leaves under 3 top levels.

Base titles are hand-written in the styles real feeds use (brand first or last,
model codes, sizes, pack counts, "Women's"/"Womens"/"W", marketing words);
``make_catalogue`` then augments them with the noise real titles have: typos,
abbreviations, casing, dropped and reordered words, extra attributes. It writes
a custom taxonomy, the labelled catalogue, and a 70/30 stratified split:

    .venv/bin/python -m bench.retail_standin --out bench-results/retail

The split files are what ``catstream train`` / ``catstream evaluate`` read.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

TAXONOMY = """\
Fashion > Women > Dresses
Fashion > Women > Tops & Blouses
Fashion > Men > T-Shirts
Fashion > Men > Jeans
Fashion > Shoes > Sneakers
Fashion > Shoes > Boots
Fashion > Accessories > Handbags
Electronics > Phones > Smartphones
Electronics > Phones > Phone Cases
Electronics > Audio > Headphones
Electronics > Audio > Bluetooth Speakers
Electronics > Computers > Laptops
Electronics > Computers > Keyboards & Mice
Home & Kitchen > Kitchen > Cookware
Home & Kitchen > Kitchen > Coffee Makers
Home & Kitchen > Bedding > Duvet Covers
Home & Kitchen > Lighting > Lamps
"""

TITLES: dict[str, list[str]] = {
    "Fashion > Women > Dresses": [
        "Floral Print Wrap Midi Dress",
        "Women's Sleeveless Bodycon Party Dress Black",
        "Boho Maxi Dress with Tiered Ruffle Hem",
        "Zara Satin Slip Dress Champagne",
        "Ladies Summer Sundress Spaghetti Strap Cotton",
        "Long Sleeve Knit Sweater Dress Oatmeal",
        "Little Black Dress Cocktail A-Line",
        "H&M Smocked Linen-blend Dress",
        "Womens Casual T Shirt Dress Pocket Grey",
        "Off Shoulder Evening Gown Sequin Navy",
        "Shirt Dress Belted Button Down Striped",
        "Plus Size Empire Waist Chiffon Dress",
        "Vintage Polka Dot Swing Dress 50s Style",
        "Mango Pleated Midi Dress Green",
        "Wedding Guest Dress Lace Overlay Blush",
        "Denim Pinafore Dress Dungaree Style",
        "Petite Tea Dress Ditsy Floral",
        "Velvet Mini Dress Long Sleeve Burgundy",
        "ASOS DESIGN cami maxi dress in leopard",
        "Ribbed Bodycon Midi Dress Square Neck",
        "Maternity Wrap Dress Jersey",
        "Kaftan Beach Cover Up Dress",
    ],
    "Fashion > Women > Tops & Blouses": [
        "Women's Chiffon Blouse Long Sleeve Bow Tie Neck",
        "Ladies Peplum Top Ruffle White",
        "Silk Cami Top Adjustable Straps Ivory",
        "Off the Shoulder Bardot Top Black",
        "Zara Poplin Shirt Blouse Oversized",
        "Womens Crop Top Ribbed Knit",
        "Puff Sleeve Blouse Square Neck Floral",
        "Sheer Mesh Top Long Sleeve",
        "Wrap Front Blouse Satin Emerald",
        "Ladies Tunic Top Loose Fit Linen",
        "Lace Trim Camisole Vest Top",
        "Peasant Blouse Embroidered Boho",
        "Halter Neck Top Backless Summer",
        "H&M Ruffled Blouse Pink",
        "Womens Button Up Shirt Chambray",
        "Cowl Neck Top Satin Champagne",
        "Corset Style Top Sweetheart Neckline",
        "Tie Front Crop Blouse Gingham",
        "Plus Size Batwing Top Jersey",
        "Ladies Work Blouse Pussy Bow Navy",
        "One Shoulder Asymmetric Top",
    ],
    "Fashion > Men > T-Shirts": [
        "Men's Crew Neck T-Shirt Cotton White 3 Pack",
        "Nike Dri-FIT Mens Training Tee Black",
        "Graphic Tee Vintage Band Print Mens",
        "Mens V-Neck Tshirt Slim Fit Navy",
        "Champion Script Logo T Shirt Grey",
        "Levi's Housemark Graphic Tee",
        "Men's Oversized Heavyweight Tee Washed Black",
        "Under Armour Tech 2.0 Short Sleeve Shirt Mens",
        "Plain Basic Tee Men Organic Cotton",
        "Mens Pocket T-Shirt Heather Olive",
        "Adidas Essentials 3-Stripes Tee M",
        "Long Sleeve Tee Mens Henley Waffle",
        "Ralph Lauren Custom Slim Fit Jersey Crewneck T-Shirt",
        "Men's Muscle Fit Gym T Shirt",
        "Tie Dye T-Shirt Mens Summer",
        "Funny Slogan Tshirt Birthday Gift for Him",
        "Hanes Men's ComfortSoft Tagless Tee 6-Pack",
        "Mens Striped Breton Tee Navy White",
        "Puma Essential Logo Tee Men",
        "Raglan Baseball Tee 3/4 Sleeve Mens",
        "Fruit of the Loom Valueweight T Men Red",
    ],
    "Fashion > Men > Jeans": [
        "Levi's 501 Original Fit Jeans Mens Stonewash",
        "Men's Slim Fit Stretch Denim Jeans Dark Blue",
        "Wrangler Regular Fit Jean Mens 34W 32L",
        "Skinny Ripped Jeans Men Distressed Black",
        "Mens Straight Leg Jeans Raw Selvedge Denim",
        "Diesel Sleenker Skinny Jeans",
        "Lee Brooklyn Straight Mens Jean",
        "Relaxed Fit Carpenter Jeans Light Wash",
        "Men's Tapered Jeans Mid Blue 32x30",
        "G-Star Raw 3301 Slim Jeans",
        "Bootcut Jeans Men Classic Indigo",
        "Mens Loose Fit Baggy Denim Pants",
        "Jack & Jones Glenn Original Slim Fit Jeans",
        "Levis 511 Slim Fit Mens Jeans Rinse",
        "Athletic Fit Jeans for Men Stretch",
        "Carhartt Double Knee Denim Work Jean",
        "Men's Biker Jeans Zip Detail Grey",
        "Tommy Hilfiger Denton Straight Jeans",
        "Mens Cargo Jeans Pocket Black Denim",
        "Wrangler Texas Stretch Mens Jeans",
        "Big & Tall Mens Jeans 44W",
    ],
    "Fashion > Shoes > Sneakers": [
        "Nike Air Max 90 Trainers White",
        "Adidas Stan Smith Sneakers Green Heel",
        "Converse Chuck Taylor All Star Hi Top Canvas",
        "Vans Old Skool Skate Shoe Black White",
        "New Balance 574 Core Trainers Grey",
        "Women's Platform Sneakers Chunky Sole",
        "Puma Suede Classic XXI Sneaker",
        "Mens Running Shoes Lightweight Breathable",
        "Reebok Club C 85 Vintage Trainers",
        "Asics Gel-Kayano 29 Running Shoe",
        "Slip On Canvas Sneakers Unisex",
        "Nike Air Force 1 '07 Low",
        "Kids Light Up Trainers Velcro",
        "Veja V-10 Leather Sneakers",
        "Skechers Go Walk Memory Foam Shoes",
        "Adidas Ultraboost 22 Running Trainers",
        "Hoka Clifton 9 Road Running Shoe",
        "Retro Basketball Sneakers High Top",
        "On Cloud 5 Running Shoes Womens",
        "Fila Disruptor II Chunky Trainers",
        "Mesh Sock Trainers Knit Upper",
    ],
    "Fashion > Shoes > Boots": [
        "Dr. Martens 1460 Smooth Leather Lace Up Boots",
        "Timberland 6 Inch Premium Waterproof Boot Wheat",
        "Women's Chelsea Boots Suede Tan",
        "UGG Classic Short II Sheepskin Boot",
        "Mens Work Boots Steel Toe Cap",
        "Knee High Boots Block Heel Black",
        "Hunter Original Tall Wellington Boots",
        "Ankle Boots Women Low Heel Zip",
        "Hiking Boots Mens Waterproof Mid",
        "Cowboy Boots Western Embroidered Leather",
        "Blundstone 550 Chelsea Boot",
        "Combat Boots Lace Up Chunky Sole",
        "Over the Knee Boots Stretch Suede",
        "Caterpillar Colorado Boot Mens",
        "Snow Boots Kids Fleece Lined",
        "Wellies Ladies Rain Boots Floral",
        "Desert Boots Clarks Originals Sand",
        "Biker Boots Buckle Detail",
        "Sorel Caribou Winter Boot",
        "Heeled Ankle Booties Pointed Toe",
        "Red Wing Iron Ranger Boots",
    ],
    "Fashion > Accessories > Handbags": [
        "Michael Kors Jet Set Large Tote Bag",
        "Women's Leather Crossbody Bag Tan",
        "Coach Tabby Shoulder Bag 26",
        "Quilted Chain Shoulder Bag Black",
        "Large Canvas Tote Bag with Zip",
        "Mini Bucket Bag Drawstring",
        "Kate Spade Satchel Handbag Pebbled Leather",
        "Clutch Purse Evening Bag Glitter",
        "Ladies Hobo Bag Slouchy Faux Leather",
        "Fossil Crossbody Purse Small",
        "Woven Straw Beach Bag",
        "Saddle Bag Vintage Brown",
        "Baguette Bag Croc Effect",
        "Radley Medium Grab Bag",
        "Half Moon Shoulder Bag Nylon",
        "Designer Inspired Top Handle Handbag",
        "Cross Body Phone Bag Pouch",
        "Longchamp Le Pliage Tote",
        "Waist Bag Belt Bag Fanny Pack",
        "Structured Work Bag Laptop Compartment Women",
        "Woven Leather Intrecciato Pouch Bag",
    ],
    "Electronics > Phones > Smartphones": [
        "Apple iPhone 14 128GB Midnight Unlocked",
        "Samsung Galaxy S23 Ultra 256GB Phantom Black",
        "Google Pixel 7a 5G Smartphone Charcoal",
        "OnePlus 11 5G 16GB RAM 256GB",
        "Xiaomi Redmi Note 12 Pro Dual SIM",
        "Motorola Moto G54 Android Phone",
        "Refurbished iPhone 12 64GB Grade A",
        "Samsung Galaxy A54 5G Awesome Violet",
        "Nokia G22 Smartphone 4GB 64GB",
        "Sony Xperia 10 V 5G",
        "Unlocked Android Mobile Phone 6.5 inch Dual SIM",
        "iPhone 15 Pro Max 1TB Natural Titanium",
        "Oppo Find X5 Lite 5G",
        "Samsung Galaxy Z Flip5 Foldable Phone",
        "Huawei P30 Pro Refurbished",
        "Google Pixel 8 Pro 128GB Obsidian",
        "Realme 11 Pro+ 5G Smartphone",
        "Apple iPhone SE 3rd Gen 64GB Red",
        "Fairphone 5 Sustainable Smartphone",
        "Senior Mobile Phone Big Buttons SOS",
        "Honor Magic5 Lite 5G",
    ],
    "Electronics > Phones > Phone Cases": [
        "iPhone 14 Case Clear Shockproof",
        "Samsung Galaxy S23 Ultra Leather Wallet Case",
        "OtterBox Defender Series Case for iPhone 13",
        "Spigen Tough Armor Pixel 7 Case",
        "Silicone Case with MagSafe iPhone 15 Pro",
        "Phone Cover Glitter Liquid Quicksand",
        "Flip Case Card Holder Stand Magnetic",
        "Galaxy A54 Rugged Case Belt Clip",
        "Apple FineWoven Case iPhone 15",
        "Cute Cartoon Phone Case Soft TPU",
        "Case-Mate Tough Clear Case",
        "Waterproof Phone Pouch Universal",
        "UAG Monarch Case for Samsung S24",
        "iPhone 12 Mini Bumper Cover",
        "Marble Pattern Slim Phone Case",
        "ESR Kickstand Case Compatible with iPhone 14 Pro",
        "Pixel 8 Pro Case with Screen Protector",
        "Crossbody Phone Case Lanyard Strap",
        "Battery Case Charging Cover iPhone 11",
        "Nillkin CamShield Case Xiaomi 13",
        "Personalised Name Phone Case",
    ],
    "Electronics > Audio > Headphones": [
        "Sony WH-1000XM5 Wireless Noise Cancelling Headphones",
        "Apple AirPods Pro 2nd Generation",
        "Bose QuietComfort 45 Over-Ear Headphones",
        "Samsung Galaxy Buds2 Pro True Wireless Earbuds",
        "Sennheiser HD 599 Open Back Headphones",
        "Wired Earphones with Mic 3.5mm In-Ear",
        "Beats Studio3 Wireless Over Ear",
        "Gaming Headset with Microphone RGB PS5",
        "JBL Tune 510BT On-Ear Headphones",
        "Bone Conduction Headphones Open Ear Sports",
        "Audio-Technica ATH-M50x Studio Monitor Headphones",
        "Kids Headphones Volume Limited Foldable",
        "Sony WF-1000XM4 Earbuds",
        "SteelSeries Arctis Nova 7 Wireless Headset",
        "Anker Soundcore Liberty 4 NC",
        "Jabra Elite 85t True Wireless",
        "Sleep Headphones Headband Bluetooth",
        "Beyerdynamic DT 770 PRO 80 Ohm",
        "Nothing Ear (2) Wireless Earbuds",
        "Marshall Major IV Bluetooth Headphones",
        "HyperX Cloud II Gaming Headset",
    ],
    "Electronics > Audio > Bluetooth Speakers": [
        "JBL Flip 6 Portable Bluetooth Speaker Blue",
        "Bose SoundLink Flex Waterproof Speaker",
        "Ultimate Ears BOOM 3 Wireless Speaker",
        "Anker Soundcore 2 Portable Speaker",
        "Sonos Roam Portable Smart Speaker",
        "Marshall Emberton II Bluetooth Speaker",
        "Shower Speaker Waterproof Suction Cup",
        "JBL Charge 5 Wireless Speaker",
        "Party Speaker with Disco Lights Karaoke",
        "Mini Bluetooth Speaker Keychain",
        "Bang & Olufsen Beosound A1 2nd Gen",
        "Sony SRS-XB13 Extra Bass Speaker",
        "Tribit StormBox Micro 2",
        "Outdoor Rugged Speaker IP67 Wireless",
        "Amazon Echo Dot 5th Gen Smart Speaker",
        "JBL PartyBox 110",
        "Bluetooth Speaker with FM Radio and SD Card",
        "Bose SoundLink Revolve+ II",
        "UE Wonderboom 3 Ultra Portable",
        "Soundbar Style Bluetooth Speaker for TV and PC",
        "Retro Wooden Bluetooth Speaker",
    ],
    "Electronics > Computers > Laptops": [
        "Apple MacBook Air 13 M2 8GB 256GB Midnight",
        "Dell XPS 15 Laptop Intel i7 16GB 512GB SSD",
        "Lenovo ThinkPad X1 Carbon Gen 11",
        "HP Pavilion 15.6 inch Laptop Ryzen 5",
        "ASUS ROG Strix G16 Gaming Laptop RTX 4060",
        "Acer Chromebook 314 14in",
        "Microsoft Surface Laptop 5 13.5",
        "Refurbished Notebook Core i5 8GB Windows 11",
        "MacBook Pro 14 M3 Pro 18GB",
        "Lenovo IdeaPad Slim 3 15 Laptop",
        "MSI Katana 15 Gaming Notebook",
        "Acer Aspire 5 Laptop 15.6 FHD",
        "2-in-1 Convertible Touchscreen Laptop",
        "HP EliteBook 840 G9 Business Laptop",
        "Razer Blade 14 Gaming Laptop",
        "Samsung Galaxy Book3 Pro 360",
        "Student Laptop 14 inch Celeron 4GB",
        "Dell Inspiron 14 Plus",
        "ASUS Zenbook 14 OLED Ultrabook",
        "Framework Laptop 13 DIY Edition",
        "Gigabyte Aorus 17 Gaming Laptop",
    ],
    "Electronics > Computers > Keyboards & Mice": [
        "Logitech MX Master 3S Wireless Mouse",
        "Mechanical Gaming Keyboard RGB Blue Switches",
        "Apple Magic Keyboard with Touch ID",
        "Razer DeathAdder V3 Gaming Mouse",
        "Wireless Keyboard and Mouse Combo UK Layout",
        "Logitech K380 Multi-Device Bluetooth Keyboard",
        "Ergonomic Vertical Mouse Rechargeable",
        "Keychron K2 Wireless Mechanical Keyboard",
        "Corsair K70 RGB Pro",
        "Silent Click USB Mouse Optical",
        "Apple Magic Mouse Black Multi-Touch",
        "Microsoft Sculpt Ergonomic Keyboard",
        "Trackball Mouse Logitech Ergo M575",
        "60% Compact Keyboard Hot Swappable",
        "SteelSeries Rival 3 Mouse",
        "Numeric Keypad USB Wireless",
        "Logitech G Pro X Superlight 2",
        "Backlit Keyboard Slim Membrane",
        "HyperX Alloy Origins Core TKL",
        "Travel Mouse Bluetooth Compact",
        "Gaming Mouse Pad XXL Desk Mat with Mouse Bundle",
    ],
    "Home & Kitchen > Kitchen > Cookware": [
        "Tefal Non-Stick Frying Pan 28cm",
        "Le Creuset Signature Cast Iron Round Casserole 24cm",
        "Stainless Steel Saucepan Set 5 Piece with Lids",
        "Lodge Cast Iron Skillet 10.25 Inch",
        "Carbon Steel Wok 14 inch Flat Bottom",
        "Ninja ZEROSTICK Cookware Set",
        "Induction Stock Pot 8 Quart",
        "Ceramic Non Stick Pan Set Green",
        "Tower Cerastone Forged Saute Pan",
        "Dutch Oven Enamelled 5.5 Qt",
        "Griddle Pan Cast Iron Ribbed",
        "Copper Bottom Pots and Pans 10 Piece",
        "Milk Pan 16cm Stainless",
        "Scanpan Classic Fry Pan",
        "Circulon Hard Anodised Saucepan 20cm",
        "Crepe Pan Pancake 24cm",
        "Pressure Cooker Stovetop 6L",
        "Roasting Tin with Rack",
        "Hexclad Hybrid Pan 12 inch",
        "Paella Pan 40cm Polished Steel",
        "Egg Poacher Pan 4 Cup",
    ],
    "Home & Kitchen > Kitchen > Coffee Makers": [
        "De'Longhi Magnifica S Bean to Cup Coffee Machine",
        "Nespresso Vertuo Next Coffee Pod Machine",
        "Bodum Chambord French Press 8 Cup",
        "Breville Barista Express Espresso Machine",
        "Drip Coffee Maker 12 Cup Programmable",
        "Moka Pot Bialetti Express 6 Cup",
        "Keurig K-Mini Single Serve Coffee Brewer",
        "AeroPress Original Coffee Maker",
        "Sage the Bambino Plus Espresso",
        "Pour Over Coffee Dripper V60 Ceramic",
        "Dolce Gusto Genio S Plus Capsule Machine",
        "Cold Brew Coffee Maker 1L Glass",
        "Filter Coffee Machine with Timer",
        "Krups Evidence One Bean-to-Cup",
        "Melitta Aroma Fresh Grind and Brew",
        "Stovetop Espresso Maker Stainless",
        "Tassimo Style Pod Coffee Machine",
        "Chemex Classic 6 Cup Glass Coffeemaker",
        "Siphon Vacuum Coffee Maker",
        "Smeg Drip Filter Coffee Machine Cream",
        "Gaggia Classic Evo Pro",
    ],
    "Home & Kitchen > Bedding > Duvet Covers": [
        "Double Duvet Cover Set Cotton White",
        "King Size Duvet Cover with Pillowcases Grey",
        "Dunelm Linen Look Duvet Cover",
        "Brushed Cotton Flannelette Duvet Set Check",
        "Kids Dinosaur Single Duvet Cover",
        "Egyptian Cotton 400 Thread Count Quilt Cover",
        "Super King Seersucker Duvet Cover Blush",
        "Reversible Striped Bedding Set Double",
        "Catherine Lansfield Teddy Fleece Duvet Set",
        "Washed Linen Duvet Cover Sage Green",
        "Percale Comforter Cover Queen",
        "Floral Duvet Set Single Reversible",
        "IKEA Duvet Cover and 2 Pillowcases",
        "Satin Silky Duvet Cover Champagne King",
        "Christmas Bedding Set Double Reindeer",
        "Microfibre Easy Care Quilt Cover Set",
        "Boho Tufted Duvet Cover Queen",
        "Bamboo Duvet Cover Cooling",
        "Toddler Cot Bed Duvet Cover",
        "Waffle Texture Duvet Cover Charcoal",
        "Pom Pom Trim Bedding Set White",
    ],
    "Home & Kitchen > Lighting > Lamps": [
        "Modern Table Lamp with Fabric Shade",
        "LED Desk Lamp Dimmable USB Charging Port",
        "Floor Lamp Arc Brushed Chrome",
        "Bedside Lamp Touch Control Set of 2",
        "Tripod Floor Lamp Wood",
        "Mushroom Lamp Glass Retro",
        "Anglepoise Type 75 Desk Lamp",
        "Salt Lamp Himalayan Natural",
        "Ceramic Base Table Lamp Blue",
        "Reading Lamp Clip On Flexible",
        "IKEA FADO Table Lamp",
        "Rattan Floor Lamp Boho",
        "Smart LED Lamp Wifi Colour Changing",
        "Banker's Lamp Green Glass Brass",
        "Cordless Rechargeable Table Lamp Outdoor",
        "Kids Night Light Lamp Moon",
        "Philips Hue Go Portable Light",
        "Lava Lamp Purple 14.5 inch",
        "Industrial Cage Table Lamp Edison",
        "Uplighter Floor Lamp Mother and Child",
        "Gourd Table Lamp Gold Linen Shade",
    ],
}

# The legacy keyword rules a retailer would have written for this tree (the rule baseline).
RULES = """\
version: 1
rules:
  - {category: Fashion > Women > Dresses, title: [dress, gown, sundress, kaftan]}
  - {category: Fashion > Women > Tops & Blouses, title: [blouse, top, cami, camisole, tunic]}
  - {category: Fashion > Men > T-Shirts, title: [t-shirt, tshirt, tee], not_title: [dress]}
  - {category: Fashion > Men > Jeans, title: [jeans, jean, denim], not_title: [dress, shirt]}
  - {category: Fashion > Shoes > Sneakers, title: [sneaker, trainer, running shoe]}
  - {category: Fashion > Shoes > Boots, title: [boot, booties, wellies, wellington]}
  - {category: Fashion > Accessories > Handbags, title: [handbag, tote, crossbody, clutch, purse]}
  - {category: Electronics > Phones > Smartphones, title: [smartphone, iphone, galaxy, pixel],
     not_title: [case, cover]}
  - {category: Electronics > Phones > Phone Cases, title: [case, phone cover]}
  - {category: Electronics > Audio > Headphones, title: [headphones, earbuds, headset, airpods]}
  - {category: Electronics > Audio > Bluetooth Speakers, title: [speaker]}
  - {category: Electronics > Computers > Laptops, title: [laptop, notebook, macbook, chromebook]}
  - {category: Electronics > Computers > Keyboards & Mice, title: [keyboard, mouse]}
  - {category: Home & Kitchen > Kitchen > Cookware, title: [pan, pot, saucepan, skillet, wok]}
  - {category: Home & Kitchen > Kitchen > Coffee Makers, title: [coffee, espresso, french press]}
  - {category: Home & Kitchen > Bedding > Duvet Covers, title: [duvet, bedding, quilt cover]}
  - {category: Home & Kitchen > Lighting > Lamps, title: [lamp, light]}
"""

_COLOURS = ["Black", "White", "Navy", "Grey", "Red", "Blue", "Green", "Beige", "Pink", "Brown"]
_SIZES = ["S", "M", "L", "XL", "UK 8", "UK 10", "EU 42", "Size 9", "One Size", "32W"]
_ABBREVIATIONS = [
    (r"\bWomen's\b", ["Womens", "Wmns", "W", "Ladies"]),
    (r"\bMen's\b", ["Mens", "Mns", "M", "Gents"]),
    (r"\bWireless\b", ["Wrls", "Cordless", "wireless"]),
    (r"\bBluetooth\b", ["BT", "Blutooth", "bluetooth"]),
    (r"\bStainless Steel\b", ["SS", "Stainless"]),
    (r"\binch\b", ['"', "in", "In."]),
    (r"\bwith\b", ["w/", "+", "&"]),
    (r"\bT-Shirt\b", ["Tee", "T Shirt", "Tshirt", "tshirt"]),
    (r"\bLaptop\b", ["Notebook", "laptop"]),
    (r"\bHeadphones\b", ["Headphone", "Head phones", "Headset"]),
    (r"\bSet\b", ["set", "Bundle"]),
]
_FILLERS = ["NEW", "2024", "Sale", "Free Delivery", "Gift", "Best Seller", "Limited", "Genuine"]


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 4 or not word.isalpha():
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.choice(["swap", "drop", "double", "replace"])
    if kind == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == "drop":
        return word[:i] + word[i + 1 :]
    if kind == "double":
        return word[:i] + word[i] + word[i:]
    return word[:i] + rng.choice("aeiounrst") + word[i + 1 :]


def augment(title: str, rng: random.Random) -> str:
    """One noisy variant of a base title."""
    text = title
    for pattern, replacements in _ABBREVIATIONS:
        if rng.random() < 0.5:
            text = re.sub(pattern, rng.choice(replacements), text)
    words = text.split()
    if len(words) > 3 and rng.random() < 0.35:
        del words[rng.randrange(1, len(words))]
    if rng.random() < 0.35:
        words = [_typo(w, rng) if rng.random() < 0.25 else w for w in words]
    if rng.random() < 0.3:
        words.append(rng.choice(_COLOURS))
    if rng.random() < 0.2:
        words.append(rng.choice(_SIZES))
    if rng.random() < 0.1:
        words.insert(0, rng.choice(_FILLERS))
    separator = rng.choice([" ", " ", " ", " - ", " | ", ", "])
    if separator != " " and len(words) > 3:
        cut = rng.randrange(2, len(words))
        text = " ".join(words[:cut]) + separator + " ".join(words[cut:])
    else:
        text = " ".join(words)
    casing = rng.random()
    if casing < 0.1:
        text = text.upper()
    elif casing < 0.2:
        text = text.lower()
    return text


def make_catalogue(per_leaf: int = 105, seed: int = 7) -> list[dict[str, object]]:
    rng = random.Random(seed)
    rows: list[dict[str, object]] = []
    for category, titles in TITLES.items():
        for i in range(per_leaf):
            base = titles[i % len(titles)]
            title = base if i < len(titles) and rng.random() < 0.5 else augment(base, rng)
            rows.append(
                {
                    "product_id": f"{category.split(' > ')[-1][:4].lower()}-{i:04d}",
                    "title": title,
                    "category": category,
                    "base": i % len(titles),
                }
            )
    rng.shuffle(rows)
    return rows


def stratified_halves(
    rows: list[dict[str, object]], fraction: float, seed: int, by_base: bool = False
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """70/30 per category; ``by_base`` keeps every variant of a base title on one side.

    Splitting by base title is the honest test: the held-out products are items
    the model never saw in any spelling, as in a real catalogue of distinct titles.
    """
    rng = random.Random(seed)
    by_category: dict[str, list[dict[str, object]]] = {}
    for row in rows:
        by_category.setdefault(str(row["category"]), []).append(row)
    first: list[dict[str, object]] = []
    second: list[dict[str, object]] = []
    for category in sorted(by_category):
        group = by_category[category]
        if by_base:
            bases = sorted({int(str(r["base"])) for r in group})
            rng.shuffle(bases)
            kept = set(bases[: round(len(bases) * fraction)])
            first.extend(r for r in group if r["base"] in kept)
            second.extend(r for r in group if r["base"] not in kept)
            continue
        rng.shuffle(group)
        cut = round(len(group) * fraction)
        first.extend(group[:cut])
        second.extend(group[cut:])
    return first, second


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> None:
    cleaned = [{k: v for k, v in r.items() if k != "base"} for r in rows]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in cleaned))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-results/retail"))
    parser.add_argument("--per-leaf", type=int, default=105)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--by-base",
        action="store_true",
        help="hold out whole base titles (every variant) rather than single rows",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = make_catalogue(args.per_leaf, args.seed)
    train, test = stratified_halves(rows, 0.7, args.seed, args.by_base)
    (args.out / "taxonomy.txt").write_text(TAXONOMY)
    (args.out / "rules.yaml").write_text(RULES)
    write_jsonl(args.out / "catalogue.jsonl", rows)
    write_jsonl(args.out / "train.jsonl", train)
    write_jsonl(args.out / "test.jsonl", test)
    print(f"wrote {len(rows)} products ({len(train)} train, {len(test)} test) to {args.out}")


if __name__ == "__main__":
    main()
