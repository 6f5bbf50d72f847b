"""The phoneme inventory: acoustic targets and viseme targets, linked the way articulation links them.

Vowel formants are computed from the vowel's articulation (``vowel_formants``): an open jaw raises F1,
lip rounding lowers F2 and F3, a fronted tongue (invisible) raises F2. Bilabial closures silence the
signal; nasals keep a weak low murmur.
"""

from __future__ import annotations

from dataclasses import dataclass

# Order of the articulatory channels that visemes weight (matches blendshapes.MOUTH_FIELDS).
CHANNELS = ("jaw", "round", "spread", "press", "labiodental")
NOISE_BANDS = {  # name -> (low Hz, high Hz) of the band-passed noise source
    "hiss": (4200.0, 7600.0),  # s, z
    "hush": (1900.0, 5200.0),  # sh
    "flat": (1200.0, 7600.0),  # f, v
    "burst_lab": (300.0, 2500.0),  # p, b release
    "burst_alv": (2800.0, 7000.0),  # t, d release
    "burst_vel": (1200.0, 3200.0),  # k, g release
}
BANDWIDTHS = (70.0, 100.0, 140.0, 200.0)


def vowel_formants(jaw: float, round_: float, spread: float, front: float) -> tuple[float, ...]:
    """F1-F4 (Hz, reference vocal tract) from articulation: the physical link between face and voice."""
    f1 = 220.0 + 560.0 * jaw - 40.0 * round_
    f2 = 1450.0 + 620.0 * front - 380.0 * round_ + 120.0 * spread
    f3 = 2550.0 + 250.0 * front - 250.0 * round_
    return (f1, f2, f3, 3600.0)


@dataclass(frozen=True)
class Phoneme:
    symbol: str
    category: str  # bilabial | labiodental | vowel | sibilant | stop | nasal | liquid | glide | silence
    duration: tuple[float, float]  # seconds (min, max) at rate 1
    viseme: dict[str, float]  # channel -> target weight
    formants: tuple[float, float, float, float]
    voicing: float  # amplitude of the glottal source during the segment
    noise: str | None = None  # NOISE_BANDS key
    noise_amp: float = 0.0
    burst: bool = False  # a stop: closure (silent or voice bar) then a release burst
    front: float = 0.0

    def target(self, channel: str) -> float:
        return self.viseme.get(channel, 0.0)


def _vowel(sym: str, dur, jaw, round_, spread, front) -> Phoneme:
    vis = {"jaw": jaw, "round": round_, "spread": spread}
    return Phoneme(sym, "vowel", dur, vis, vowel_formants(jaw, round_, spread, front), 1.0, front=front)


_NASAL_F = (260.0, 1050.0, 2300.0, 3500.0)
_CLOSED_F = (200.0, 1100.0, 2400.0, 3500.0)

INVENTORY: dict[str, Phoneme] = {
    p.symbol: p
    for p in (
        _vowel("a", (0.11, 0.17), 0.95, 0.0, 0.15, 0.0),
        _vowel("e", (0.09, 0.14), 0.55, 0.0, 0.55, 0.7),
        _vowel("i", (0.08, 0.13), 0.18, 0.0, 0.9, 1.0),
        _vowel("o", (0.10, 0.15), 0.6, 0.75, 0.0, -0.6),
        _vowel("u", (0.09, 0.14), 0.22, 1.0, 0.0, -0.85),
        _vowel("@", (0.06, 0.09), 0.4, 0.0, 0.0, 0.0),
        Phoneme("p", "bilabial", (0.07, 0.10), {"jaw": 0.08, "press": 1.0}, _CLOSED_F, 0.0,
                "burst_lab", 0.55, burst=True),
        Phoneme("b", "bilabial", (0.06, 0.09), {"jaw": 0.08, "press": 1.0}, _CLOSED_F, 0.12,
                "burst_lab", 0.35, burst=True),
        Phoneme("m", "bilabial", (0.07, 0.10), {"jaw": 0.08, "press": 1.0}, _NASAL_F, 0.35),
        Phoneme("f", "labiodental", (0.08, 0.12), {"jaw": 0.15, "labiodental": 1.0}, _CLOSED_F, 0.0,
                "flat", 0.14),
        Phoneme("v", "labiodental", (0.06, 0.09), {"jaw": 0.15, "labiodental": 1.0}, _CLOSED_F, 0.35,
                "flat", 0.08),
        Phoneme("s", "sibilant", (0.09, 0.13), {"jaw": 0.14, "spread": 0.45}, _CLOSED_F, 0.0,
                "hiss", 0.22),
        Phoneme("z", "sibilant", (0.07, 0.10), {"jaw": 0.14, "spread": 0.45}, _CLOSED_F, 0.35,
                "hiss", 0.14),
        Phoneme("sh", "sibilant", (0.09, 0.13), {"jaw": 0.18, "round": 0.55}, _CLOSED_F, 0.0,
                "hush", 0.22),
        Phoneme("t", "stop", (0.06, 0.09), {"jaw": 0.2}, _CLOSED_F, 0.0, "burst_alv", 0.5, burst=True),
        Phoneme("d", "stop", (0.05, 0.08), {"jaw": 0.2}, _CLOSED_F, 0.12, "burst_alv", 0.3, burst=True),
        Phoneme("k", "stop", (0.06, 0.09), {"jaw": 0.3}, _CLOSED_F, 0.0, "burst_vel", 0.5, burst=True),
        Phoneme("g", "stop", (0.05, 0.08), {"jaw": 0.3}, _CLOSED_F, 0.12, "burst_vel", 0.3, burst=True),
        Phoneme("n", "nasal", (0.06, 0.09), {"jaw": 0.2}, _NASAL_F, 0.4),
        Phoneme("l", "liquid", (0.05, 0.08), {"jaw": 0.3}, (360.0, 1150.0, 2750.0, 3600.0), 0.75),
        Phoneme("r", "liquid", (0.05, 0.08), {"jaw": 0.25, "round": 0.35}, (380.0, 1200.0, 1750.0, 3400.0),
                0.75),
        Phoneme("w", "glide", (0.05, 0.08), {"jaw": 0.15, "round": 0.95}, (300.0, 700.0, 2300.0, 3400.0),
                0.8),
        Phoneme("sil", "silence", (0.06, 0.12), {}, _CLOSED_F, 0.0),
    )
}

VOWELS = tuple(s for s, p in INVENTORY.items() if p.category == "vowel")
