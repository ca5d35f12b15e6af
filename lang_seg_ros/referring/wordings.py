"""Word lists of the CamVid referring path, kept apart by what they are for.

- `CAMVID_KNOWN`: the wordings the embedded default model was trained with
  (`configs/wordings/camvid/train_wordings.yaml`, copied here so that an installed package has
  them; `test/test_referring_wordings.py` checks the two agree). A phrase that is one of them is
  read as its class without any rule ("the person" -> pedestrian).
- `CAMVID_DEV`: wordings and absent categories that CHOOSE the phrase -> label rule (its
  embedding threshold, `bench/choose_phrase_rule.py`, and the unit tests of the lexicon). Never in
  the model's training wordings, the negatives, the benchmark's worded list or the lexicon's
  anchors.
- `CAMVID_WORDED`: the benchmark's worded expressions (`lang_seg_ros.data.referring_camvid`):
  wordings no list above names, used only to MEASURE ("the hatchback on the right"). Written down
  before the rule was measured on them and not changed after; `CAMVID_WORDED_ABSENT`: the
  benchmark's worded absent categories, likewise (none is a training negative).

`test/test_referring_wordings.py` asserts the lists are disjoint.
"""
from __future__ import annotations

__all__ = ["CAMVID_DEV", "CAMVID_DEV_ABSENT", "CAMVID_KNOWN", "CAMVID_NEGATIVES", "CAMVID_WORDED", "CAMVID_WORDED_ABSENT"]

#: The default model's training wordings per CamVid class (train_wordings.yaml).
CAMVID_KNOWN: dict[str, tuple[str, ...]] = {
    "sky": ("sky", "blue sky", "cloudy sky", "clouds", "overcast sky", "sky background", "skies"),
    "building": ("building", "house", "wall", "buildings", "facade", "shop", "storefront", "office building",
                 "brick wall", "bridge", "tunnel", "archway", "houses", "shopfront", "architecture"),
    "pole": ("pole", "column pole", "lamp post", "lamppost", "street light", "street lamp", "column",
             "utility pole", "post", "traffic light pole", "bollard", "signpost", "telegraph pole", "poles"),
    "road": ("road", "street", "road surface", "lane marking", "lane markings", "asphalt", "roadway",
             "driving lane", "tarmac", "road markings", "lane", "roads"),
    "pavement": ("pavement", "sidewalk", "curb", "kerb", "walkway", "footway", "road shoulder", "parking block",
                 "sidewalks", "pavements"),
    "tree": ("tree", "trees", "vegetation", "bush", "bushes", "hedge", "shrub", "plants", "leaves", "tree trunk"),
    "sign symbol": ("sign symbol", "traffic sign", "road sign", "sign", "traffic light", "street sign", "sign post",
                    "text sign", "signage", "signal", "traffic signal", "signs"),
    "fence": ("fence", "railing", "railings", "barrier", "wooden fence", "metal fence", "fences", "handrail", "gate",
              "fencing"),
    "car": ("car", "cars", "SUV", "truck", "van", "automobile", "vehicle", "bus", "pickup truck", "taxi", "sedan",
            "lorry", "minivan", "parked car", "train"),
    "pedestrian": ("pedestrian", "person", "people", "child", "man", "woman", "pedestrians", "walker", "human", "kid",
                   "persons", "stroller"),
    "bicyclist": ("bicyclist", "cyclist", "bicycle", "bike", "motorcyclist", "motorcycle", "scooter", "biker",
                  "cyclists", "rider"),
}

#: Development wordings: choose the rule (label -> wordings).
CAMVID_DEV: dict[str, tuple[str, ...]] = {
    "car": ("coupe", "jeep", "limousine", "minibus", "pickup", "estate car", "convertible", "roadster", "cab",
            "station wagon", "camper van", "ambulance", "fire engine", "police car", "delivery truck",
            "double-decker", "coach", "sports car", "saloon", "parked vehicle", "white van", "red car"),
    "pedestrian": ("shopper", "jogger", "schoolgirl", "onlooker", "tourist", "gentleman", "lady", "boy", "girl",
                   "pensioner", "toddler", "businessman", "policeman", "mother", "student", "bystander",
                   "adult", "man in a coat", "woman with a bag", "person jogging", "someone"),
    "bicyclist": ("mountain biker", "cycle rider", "racing cyclist", "moped", "motorbike rider", "e-bike rider",
                  "pedal cyclist", "man on a bike", "woman riding a bicycle", "girl on a scooter",
                  "courier on a bicycle", "motorcycle rider"),
    "building": ("skyscraper", "cottage", "apartment building", "warehouse", "church", "tower block", "garage"),
    "road": ("highway", "avenue", "motorway", "boulevard", "crossroads"),
    "tree": ("oak", "pine", "palm tree", "shrubbery", "birch"),
    "pole": ("flagpole", "pylon"),
    "sign symbol": ("billboard", "stop sign", "placard"),
    "fence": ("picket fence", "balustrade", "barricade"),
    "sky": ("heavens",),
}
#: Development absent categories: no CamVid class under any reading (none a training negative).
CAMVID_DEV_ABSENT: tuple[str, ...] = (
    "kangaroo", "camel", "penguin", "owl", "squirrel", "goat", "pig", "lizard", "parrot", "wolf", "fox", "leopard",
    "gorilla", "ostrich", "swan", "canoe", "yacht", "statue", "vending machine", "suitcase", "stool", "bookcase",
    "fireplace", "trophy", "chandelier", "saxophone", "hammock", "anchor", "typewriter",
)

#: The benchmark's worded expressions (measure only): thing class -> wordings.
CAMVID_WORDED: dict[str, tuple[str, ...]] = {
    "car": ("hatchback", "motorcar", "family car", "passenger car", "compact car", "people carrier", "runabout",
            "delivery van", "estate", "four-wheel drive"),
    "pedestrian": ("passer-by", "person walking", "man walking", "woman on foot", "foot passenger", "teenager",
                   "elderly person", "youngster", "somebody", "grown-up"),
    "bicyclist": ("bike rider", "person on a bicycle", "man on a bicycle", "cycle courier", "bicycle rider",
                  "person riding a bike", "woman cycling", "pedal bike rider", "motorbike", "boy on a bike"),
}
#: The benchmark's worded absent categories (measure only).
CAMVID_WORDED_ABSENT: tuple[str, ...] = (
    "hippo", "rhinoceros", "flamingo", "peacock", "llama", "tortoise", "sailing boat", "canal barge",
    "grand piano", "bathroom sink", "sofa bed", "bunk bed", "armadillo", "reindeer", "crocodile", "seal",
)

#: Nouns that are no CamVid class (configs/wordings/negatives.txt, the default model's training
#: negatives): the embedding rule reads a phrase nearest to one of them as no label.
CAMVID_NEGATIVES: tuple[str, ...] = (
    'dog', 'cat', 'horse', 'cow', 'sheep', 'bird', 'pigeon', 'duck', 'elephant', 'giraffe', 'zebra', 'bear', 'lion',
    'tiger', 'monkey', 'rabbit', 'mouse', 'snake', 'fish', 'shark', 'whale', 'dolphin', 'butterfly', 'bee', 'spider',
    'insect', 'frog', 'turtle', 'chicken', 'deer', 'kitchen', 'bedroom', 'bathroom', 'living room', 'office',
    'classroom', 'hospital', 'library', 'restaurant', 'supermarket', 'sofa', 'couch', 'chair', 'armchair', 'bed',
    'pillow', 'blanket', 'table', 'desk', 'cupboard', 'wardrobe', 'bookshelf', 'shelf', 'drawer', 'ceiling',
    'floor tiles', 'carpet', 'rug', 'curtain', 'mirror', 'painting', 'picture frame', 'clock', 'vase', 'flower pot',
    'television', 'computer', 'laptop', 'keyboard', 'computer mouse', 'monitor', 'phone', 'smartphone', 'tablet',
    'camera', 'headphones', 'microphone', 'speaker', 'printer', 'refrigerator', 'oven', 'microwave', 'stove', 'sink',
    'toilet', 'bathtub', 'shower', 'towel', 'toothbrush', 'soap', 'washing machine', 'dishwasher', 'kettle',
    'toaster', 'blender', 'cup', 'mug', 'glass', 'bottle', 'plate', 'bowl', 'fork', 'knife', 'spoon', 'pan', 'pot',
    'teapot', 'jar', 'basket', 'box', 'wallet', 'sock', 'shirt', 'tie', 'belt', 'watch', 'ring', 'necklace',
    'glasses', 'sunglasses', 'book', 'newspaper', 'magazine', 'notebook', 'pen', 'pencil', 'paper', 'envelope',
    'scissors', 'stapler', 'ruler', 'calculator', 'guitar', 'piano', 'violin', 'drum', 'trumpet', 'ball', 'football',
    'basketball', 'tennis racket', 'baseball bat', 'surfboard', 'skis', 'snowboard', 'kite', 'frisbee', 'toy',
    'teddy bear', 'doll', 'balloon', 'candle', 'apple', 'banana', 'orange', 'lemon', 'grapes', 'strawberry',
    'watermelon', 'pineapple', 'tomato', 'potato', 'carrot', 'onion', 'broccoli', 'cabbage', 'lettuce', 'bread',
    'cake', 'pizza', 'sandwich', 'hamburger', 'hot dog', 'donut', 'cookie', 'cheese', 'egg', 'rice', 'pasta', 'soup',
    'salad', 'meat', 'chocolate', 'ice cream', 'coffee', 'tea', 'juice', 'wine', 'beer', 'milk', 'water bottle',
    'ocean', 'sea', 'lake', 'river', 'waterfall', 'beach', 'sand', 'desert', 'mountain', 'hill', 'cliff', 'cave',
    'volcano', 'glacier', 'snow', 'ice', 'island', 'waves', 'swimming pool', 'fountain', 'moon', 'star', 'rainbow',
    'lightning', 'fire', 'flame', 'airplane', 'helicopter', 'ship', 'boat', 'sailboat', 'submarine', 'rocket',
    'satellite', 'hot air balloon', 'hammer', 'screwdriver', 'wrench', 'saw', 'drill', 'shovel', 'rake', 'axe',
    'nail', 'screw', 'hose', 'bucket', 'barrel', 'tent', 'sculpture', 'pyramid', 'circus', 'carousel', 'slide',
    'swing', 'trampoline', 'net', 'cage', 'nest', 'web', 'shell', 'feather', 'bone', 'skull', 'crown', 'sword',
    'shield', 'gun', 'arrow', 'coin', 'money', 'map', 'globe', 'calendar', 'ribbon', 'button', 'zipper', 'thread',
    'needle', 'fabric', 'leather', 'wool', 'cotton', 'plastic', 'cardboard', 'marble', 'velvet', 'wallpaper',
    'sandcastle', 'snowman', 'pumpkin', 'mushroom', 'cactus', 'palm leaf', 'seaweed', 'coral', 'jellyfish',
    'octopus', 'crab', 'lobster',
)
